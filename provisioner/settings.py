"""Settings: one frozen, typed object built from provisioner.toml plus PROVISIONER_* variables.

This is the only module that reads the settings file or the environment. Everything else
receives a `Settings` (or one of its sections) as an argument; nothing calls a global
getter at import time.

Resolution order, last wins: built-in defaults, the TOML file, `PROVISIONER_*` variables
(`PROVISIONER_STATE_DIR`, `PROVISIONER_DATABASE_URL`, `PROVISIONER_<SECTION>_<KEY>`, e.g.
`PROVISIONER_HTTP_LISTEN`, `PROVISIONER_TFTP_PORT=6969`). Environment values are read as
TOML literals when they parse (`6969`, `["br0"]`, `true`) and as plain strings otherwise.

Every key with its default is documented in docs/settings.md and provisioner.example.toml;
a test checks the three agree.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from provisioner.telemetry.settings import TelemetrySettings

__all__ = [
    "ApiSettings",
    "DhcpSettings",
    "EventsSettings",
    "HttpSettings",
    "LifecycleSettings",
    "PowerSettings",
    "Settings",
    "SettingsError",
    "SubnetSettings",
    "TftpSettings",
    "TrustdSettings",
    "load_settings",
    "resolve_config_path",
]

ENV_PREFIX = "PROVISIONER_"
DEFAULT_CONFIG_FILE = "provisioner.toml"

DEFAULT_STATE_DIR = "var"
DEFAULT_DHCP_PORT = 67
DEFAULT_DHCP_PROXY_PORT = 4011
DEFAULT_LEASE_TIME_S = 3600
DEFAULT_TFTP_PORT = 69
DEFAULT_TFTP_BLOCK_SIZE_MAX = 1468  # fits a 1500-byte MTU: 1500 - 20 IP - 8 UDP - 4 TFTP
DEFAULT_TFTP_WINDOW_SIZE_MAX = 16
DEFAULT_HTTP_LISTEN = "10.77.0.1:8080"
DEFAULT_API_LISTEN = "127.0.0.1:8081"
DEFAULT_POWER_TIMEOUT_S = 10.0
DEFAULT_POWER_CONCURRENCY = 32
DEFAULT_TRUSTD_LISTEN = "10.77.0.1:50001"


class SettingsError(Exception):
    """A settings file or variable is wrong; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        msg = f"expected HOST:PORT, got {value!r}"
        raise ValueError(msg)
    try:
        number = int(port)
    except ValueError:
        msg = f"port is not a number in {value!r}"
        raise ValueError(msg) from None
    if not 0 <= number <= 65535:
        msg = f"port out of range in {value!r}"
        raise ValueError(msg)
    return host.strip("[]"), number


class SubnetSettings(_Section):
    """One `[[dhcp.subnet]]`: an address range we are authoritative for."""

    cidr: ipaddress.IPv4Network
    pool: str = ""
    """`FIRST-LAST` addresses handed to machines without a reservation; empty: none."""
    gateway: ipaddress.IPv4Address | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    lease_time: Annotated[int, Field(ge=60, le=31_536_000)] = DEFAULT_LEASE_TIME_S
    domain: str = ""

    @field_validator("pool")
    @classmethod
    def _pool_shape(cls, value: str) -> str:
        if value:
            first, sep, last = value.partition("-")
            if not sep:
                msg = "pool must be FIRST-LAST"
                raise ValueError(msg)
            lo = ipaddress.IPv4Address(first.strip())
            hi = ipaddress.IPv4Address(last.strip())
            if hi < lo:
                msg = "pool ends before it starts"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _pool_inside(self) -> SubnetSettings:
        if self.pool:
            lo, hi = self.pool_range
            if lo not in self.cidr or hi not in self.cidr:
                msg = f"pool {self.pool} is not inside {self.cidr}"
                raise ValueError(msg)
        return self

    @property
    def pool_range(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
        """The pool's first and last address."""
        first, _, last = self.pool.partition("-")
        return ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip())


class DhcpSettings(_Section):
    """`[dhcp]`: which DHCP role we play and where."""

    mode: Literal["full", "proxy", "off"] = "full"
    interfaces: tuple[str, ...] = ("br0",)
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_DHCP_PORT
    proxy_port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_DHCP_PROXY_PORT
    proxy_only_4011: bool = False
    """Proxy mode beside another DHCP server on the same host: listen on proxy_port only."""
    listen_address: ipaddress.IPv4Address = ipaddress.IPv4Address("0.0.0.0")
    server_address: ipaddress.IPv4Address | None = None
    """Our address as clients see it (option 54, siaddr); default: the interface address."""
    relay_agents: tuple[ipaddress.IPv4Address, ...] = ()
    unknown_machines: Literal["ignore", "record", "discovery"] = "record"
    instance: str = ""
    """This daemon's name (lease rows, machine claims) when several share a database.

    Default: the host name. Give each daemon sharing one database a distinct name.
    """
    subnet: tuple[SubnetSettings, ...] = ()


class TftpSettings(_Section):
    """`[tftp]`: the read-only TFTP server for first-stage boot files."""

    enabled: bool = True
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_TFTP_PORT
    listen_address: ipaddress.IPv4Address = ipaddress.IPv4Address("0.0.0.0")
    block_size_max: Annotated[int, Field(ge=8, le=65464)] = DEFAULT_TFTP_BLOCK_SIZE_MAX
    window_size_max: Annotated[int, Field(ge=1, le=65535)] = DEFAULT_TFTP_WINDOW_SIZE_MAX
    ipxe_dir: Path = Path("/usr/lib/ipxe")
    single_port: bool = False
    max_transfers: Annotated[int, Field(ge=1)] = 200
    max_transfers_per_client: Annotated[int, Field(ge=1)] = 4
    timeout_s: Annotated[float, Field(gt=0, le=255)] = 1.0
    retries: Annotated[int, Field(ge=1, le=50)] = 6


class HttpSettings(_Section):
    """`[http]`: boot scripts, assets, configs, the REST API and metrics."""

    listen: str = DEFAULT_HTTP_LISTEN
    public_url: str = ""
    """The URL machines use to reach us; default `http://` + listen."""
    templates_dir: Path | None = None
    """Operator overrides: `<dir>/ipxe/NAME.j2` replaces the packaged template NAME.j2."""

    @field_validator("listen")
    @classmethod
    def _listen_shape(cls, value: str) -> str:
        _host_port(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            msg = "public_url must start with http:// or https://"
            raise ValueError(msg)
        return value.rstrip("/")

    @field_validator("templates_dir")
    @classmethod
    def _templates_dir_exists(cls, value: Path | None) -> Path | None:
        # Checked when the settings load, so a typo stops start-up with one line naming
        # the key instead of every boot script failing later.
        if value is not None and not value.is_dir():
            msg = "not a directory"
            raise ValueError(msg)
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        """`listen` split into host and port."""
        return _host_port(self.listen)

    @property
    def base_url(self) -> str:
        """public_url, or one derived from listen."""
        return self.public_url or f"http://{self.listen}"


class ApiSettings(_Section):
    """`[api]`: the operators' listener (REST API, OpenAPI, /metrics), off the machine network.

    Plain HTTP unless `tls` is true or a certificate is given. `tls = true` without
    `tls_cert`/`tls_key` generates a self-signed certificate into the state directory; the
    CLI (same settings) pins that certificate's SHA-256 fingerprint instead of trusting a CA.
    """

    listen: str = DEFAULT_API_LISTEN
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @field_validator("listen")
    @classmethod
    def _listen_shape(cls, value: str) -> str:
        _host_port(value)
        return value

    @model_validator(mode="after")
    def _cert_and_key(self) -> ApiSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            msg = "tls_cert and tls_key go together"
            raise ValueError(msg)
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        """`listen` split into host and port."""
        return _host_port(self.listen)

    @property
    def uses_tls(self) -> bool:
        """Whether the listener speaks HTTPS."""
        return self.tls or self.tls_cert is not None

    @property
    def base_url(self) -> str:
        """Where a client on this host reaches the API (a wildcard listen means loopback)."""
        host, port = self.host_port
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{'https' if self.uses_tls else 'http'}://{host}:{port}"


class PowerSettings(_Section):
    """`[power]`: BMC calls."""

    timeout_s: Annotated[float, Field(gt=0, le=600)] = DEFAULT_POWER_TIMEOUT_S
    concurrency: Annotated[int, Field(ge=1, le=1024)] = DEFAULT_POWER_CONCURRENCY
    retries: Annotated[int, Field(ge=0, le=10)] = 2


class TrustdSettings(_Section):
    """`[trustd]`: the Talos-compatible certificate service for joining workers."""

    enabled: bool = True
    listen: str = DEFAULT_TRUSTD_LISTEN

    @field_validator("listen")
    @classmethod
    def _listen_shape(cls, value: str) -> str:
        _host_port(value)
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        """`listen` split into host and port."""
        return _host_port(self.listen)


class LifecycleSettings(_Section):
    """`[lifecycle]`: how long each provisioning stage may take, and the retry policy."""

    powering_on_s: Annotated[float, Field(gt=0)] = 120.0
    dhcp_s: Annotated[float, Field(gt=0)] = 600.0
    """From power-on until the machine's first DHCP request."""
    script_s: Annotated[float, Field(gt=0)] = 300.0
    """From DHCP until the machine fetches its iPXE script."""
    config_s: Annotated[float, Field(gt=0)] = 900.0
    """From the iPXE script until the config fetch (kernel and initramfs download and boot)."""
    trust_s: Annotated[float, Field(gt=0)] = 1800.0
    """From the config fetch until the node presents a trusted certificate (install + boot)."""
    installing_s: Annotated[float, Field(gt=0)] = 900.0
    """Installing: from the node's "install started" event until its "install finished"."""
    rebooting_s: Annotated[float, Field(gt=0)] = 600.0
    """Rebooting: from "install finished" until the node reports it booted from its disk."""
    booted_s: Annotated[float, Field(gt=0)] = 600.0
    """BootedFromDisk: until the node presents a trusted certificate."""
    deprovisioning_s: Annotated[float, Field(gt=0)] = 120.0
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    retry_base_s: Annotated[float, Field(ge=0)] = 30.0
    retry_max_s: Annotated[float, Field(ge=0)] = 900.0
    interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    """How often the reconciler looks at the machines."""


class EventsSettings(_Section):
    """`[events]`: how much unauthenticated traffic may write (issue 14, docs/threats.md)."""

    retention_days: Annotated[int, Field(ge=1, le=36_500)] = 90
    """Events older than this are deleted."""
    max_rows: Annotated[int, Field(ge=1000)] = 500_000
    """The event table keeps at most this many rows (the oldest go first)."""
    prune_interval_s: Annotated[float, Field(gt=0)] = 3600.0
    """How often retention runs (also once at start)."""
    aggregate_window_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """Repeats of one event kind from one source inside this window become one counter row."""
    aggregate_max_keys: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    """Sources tracked per window; beyond this, events fold into one "*" row per kind."""
    max_discovered: Annotated[int, Field(ge=1)] = 10_000
    """Discovered (unknown) machines kept; a new one evicts the least recently seen."""


class Settings(_Section):
    """Everything the daemon and the CLI need to know, frozen."""

    state_dir: Path = Path(DEFAULT_STATE_DIR)
    database_url: str = ""
    """SQLAlchemy async URL; default: SQLite at state_dir/provisioner.db."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    dhcp: DhcpSettings = DhcpSettings()
    tftp: TftpSettings = TftpSettings()
    http: HttpSettings = HttpSettings()
    api: ApiSettings = ApiSettings()
    power: PowerSettings = PowerSettings()
    trustd: TrustdSettings = TrustdSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    events: EventsSettings = EventsSettings()

    @property
    def db_url(self) -> str:
        """The database URL in effect."""
        return self.database_url or f"sqlite+aiosqlite:///{self.state_dir}/provisioner.db"


def resolve_config_path(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """`--config`, else PROVISIONER_CONFIG, else ./provisioner.toml if present, else None."""
    if explicit:
        return Path(explicit)
    if env := environ.get(ENV_PREFIX + "CONFIG"):
        return Path(env)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _env_value(raw: str) -> object:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Fold PROVISIONER_* variables into `data`; return the variable names used."""
    sections = {
        name
        for name, info in Settings.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
    }
    used: list[str] = []
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        section = next((s for s in sorted(sections) if key.startswith(s + "_")), None)
        if section is not None:
            data.setdefault(section, {})[key[len(section) + 1 :]] = _env_value(raw)
        elif key in Settings.model_fields:
            # Top-level keys are paths and URLs: never reinterpret them as TOML.
            data[key] = raw
        else:
            continue  # PROVISIONER_TEST_* and the like belong to other programs
        used.append(name)
    return used


def _format_error(exc: ValidationError, origin: str) -> str:
    # One line (`provisioner serve` prints start-up errors as one line): every bad entry
    # as `key value: problem`, joined with "; ".
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        text = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        value = "" if isinstance(err.get("input"), dict | list) else f" {err.get('input')!r}"
        parts.append(f"{key}{value}: {' '.join(text.split())}")
    return f"{origin}: " + "; ".join(parts)


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from `path` (may be None: defaults) and the environment.

    Raises SettingsError naming the file (or variable) and the key for every bad entry.
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    origin = "(defaults)"
    if path is not None:
        origin = str(path)
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"{origin}: settings file not found"
            raise SettingsError(msg) from None
        except tomllib.TOMLDecodeError as exc:
            msg = f"{origin}: not valid TOML: {exc}"
            raise SettingsError(msg) from None
        except (OSError, UnicodeDecodeError) as exc:
            problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            msg = f"{origin}: cannot read the settings file: {problem}"
            raise SettingsError(msg) from None
    used = _apply_env(data, env)
    if used:
        origin += " (+ " + ", ".join(used) + ")"
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_format_error(exc, origin)) from None
