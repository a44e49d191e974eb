"""The small interfaces the web layer calls in other services (registered in `rt.services`).

- `rt.services["config_renderer"]`: a `ConfigRenderer`, registered by whoever builds Talos
  machine configs. It returns the complete, validated config body for one machine.
- `rt.services["power"]`: an object with `power_action` (see `PowerService`), registered by
  the power subsystem. The API answers 503 while it is absent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from provisioner.store.records import ClusterRecord, MachineRecord

__all__ = ["POWER_ACTIONS", "ConfigRefusedError", "ConfigRenderer", "PowerService"]

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
