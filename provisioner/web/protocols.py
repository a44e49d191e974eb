"""The small interfaces (ports) the web layer calls in other parts (`WebRuntime` fields).

- `WebRuntime.renderer`: a `ConfigRenderer` (provisioner/talos/service.py builds it). It
  returns the complete, validated config body for one machine.
- `WebRuntime.power`: an object with `power_action` (see `PowerService`; the daemon gives
  `power.machines.MachinePower`). The API answers 503 while it is absent.
- `WebRuntime.logs`: `KernelLogs`, the nodes' kernel log rings (the daemon gives the
  telemetry part's hub, provisioner/telemetry/hub.py). The API answers 503 while absent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from provisioner.store.records import ClusterRecord, MachineRecord
from provisioner.telemetry.kmsg import LogLine, LogRing

__all__ = ["POWER_ACTIONS", "ConfigRefusedError", "ConfigRenderer", "KernelLogs", "PowerService"]

ConfigRenderer = Callable[[MachineRecord, ClusterRecord], Awaitable[bytes]]
"""Render one machine's Talos config. Raises on any failure (the web layer refuses then)."""


class ConfigRefusedError(Exception):
    """A renderer's refusal to produce a config (say, Talos would refuse it).

    Its message names the rule, never a secret; the web layer records it as the machine's
    failure reason (any other exception is recorded by class name only).
    """


POWER_ACTIONS = ("on", "off", "cycle", "reset", "status", "bootdev")
"""The actions the API forwards; `bootdev` takes `device` (pxe|disk) and `persistent`."""


class PowerService(Protocol):
    """What the API needs from the power subsystem."""

    async def power_action(self, machine_name: str, action: str, **kw: object) -> Mapping[str, object]:
        """Run `action` (one of POWER_ACTIONS) on the machine's BMC; return a JSON-able result.

        Raises KeyError for an unknown machine, LookupError when it has no BMC, ValueError
        for a bad action or argument, and `PowerFailedError` (provisioner.power.base) for a
        BMC failure; anything else is a bug (the API answers 500 `power-internal`).
        """
        ...


class KernelLogs(Protocol):
    """What the logs API needs from telemetry: each machine's kernel log ring."""

    def ring(self, machine: str) -> LogRing:
        """The machine's ring (empty if nothing arrived yet)."""
        ...

    async def wait_lines(self, machine: str, seen: int, timeout: float) -> list[LogLine]:
        """Lines after `seen`, waiting up to `timeout` seconds for some to arrive."""
        ...
