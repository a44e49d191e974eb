"""`[telemetry]` settings: where the event sink and kernel-log receiver listen, and bounds."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_EVENTS_PORT",
    "DEFAULT_LOGS_PORT",
    "TelemetrySettings",
    "endpoints",
    "kernel_args",
    "split_listen",
]

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})

DEFAULT_EVENTS_PORT = 4002
DEFAULT_LOGS_PORT = 4003


def split_listen(value: str, default_host: str) -> tuple[str, int]:
    """`HOST:PORT` or `:PORT` (host taken from [http]) into host and port."""
    host, sep, port = value.rpartition(":")
    if not sep:
        msg = f"expected HOST:PORT or :PORT, got {value!r}"
        raise ValueError(msg)
    try:
        number = int(port)
    except ValueError:
        msg = f"port is not a number in {value!r}"
        raise ValueError(msg) from None
    if not 0 <= number <= 65535:
        msg = f"port out of range in {value!r}"
        raise ValueError(msg)
    return (host.strip("[]") or default_host), number


class TelemetrySettings(BaseModel):
    """`[telemetry]`: Talos events sink (gRPC) and kernel-log receiver (JSON lines over TCP).

    A listen value `:PORT` takes its host from `[http] listen`: nodes reach us there.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    events_listen: str = f":{DEFAULT_EVENTS_PORT}"
    logs_listen: str = f":{DEFAULT_LOGS_PORT}"
    log_lines: Annotated[int, Field(ge=10, le=1_000_000)] = 5000
    """Kernel log lines kept per machine (a ring: the oldest go first)."""
    log_line_max_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 16384
    """A longer line is dropped and counted (Talos's kmsg lines are far shorter)."""
    events_per_machine: Annotated[int, Field(ge=10, le=1_000_000)] = 2000
    """Node event lines kept in memory per machine (the event log keeps every one it accepted)."""
    source_rate: Annotated[float, Field(gt=0)] = 200.0
    """Events (and log lines) per second accepted from one source address; more are counted, dropped."""
    source_burst: Annotated[int, Field(ge=1)] = 2000
    """How many a source may send at once before `source_rate` applies (a node's boot backlog)."""

    @field_validator("events_listen", "logs_listen")
    @classmethod
    def _listen_shape(cls, value: str) -> str:
        split_listen(value, "0.0.0.0")
        return value


def endpoints(settings: TelemetrySettings, http_listen_host: str, public_host: str) -> tuple[str, str]:
    """(event sink `HOST:PORT`, kernel log `tcp://HOST:PORT`) as a node must dial them.

    A wildcard listen address is replaced by the host of `http.public_url`, the address
    nodes already reach us at.
    """

    def reachable(listen: str) -> str:
        host, port = split_listen(listen, http_listen_host)
        host = public_host if host in _WILDCARDS else host
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    return reachable(settings.events_listen), "tcp://" + reachable(settings.logs_listen)


def kernel_args(settings: TelemetrySettings, http_listen_host: str, public_host: str) -> tuple[str, ...]:
    """The Talos kernel arguments that point a PXE-booted node at our two listeners.

    `talos.events.sink=HOST:PORT` (Talos dials it with plain-text gRPC) and
    `talos.logging.kernel=tcp://HOST:PORT` (JSON lines). Empty when telemetry is off.
    """
    if not settings.enabled:
        return ()
    sink, logs = endpoints(settings, http_listen_host, public_host)
    return (f"talos.events.sink={sink}", f"talos.logging.kernel={logs}")
