"""The daemon's parts, in start order: the one place they are chosen (see daemon.py).

Each entry is `(name, factory)` where the factory is an async context manager taking the
Runtime. The web server starts first so /healthz answers while the rest come up; the
packet services start after everything they consult exists; the reconciler starts last,
once every signal source is running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from provisioner.daemon import Runtime, ServiceFactory
from provisioner.lifecycle import StageTimeouts
from provisioner.power.machines import MachinePower
from provisioner.power.service import PowerService
from provisioner.reconciler import Reconciler
from provisioner.talos.service import config_service, make_trust_checker, trustd_service
from provisioner.web.service import web_service

__all__ = ["SERVICES", "power_service", "reconciler_service", "stage_timeouts"]


@asynccontextmanager
async def power_service(rt: Runtime) -> AsyncIterator[None]:
    """BMC power: `rt.services["power"]` is a MachinePower (API and reconciler use it)."""
    service = PowerService(rt.settings.power, rt.events)
    await service.start()
    rt.services["power"] = MachinePower(rt.store, service)
    rt.counter_sources["power"] = service.counters
    try:
        yield
    finally:
        rt.services.pop("power", None)
        await service.stop()


def stage_timeouts(rt: Runtime) -> StageTimeouts:
    """The lifecycle timeouts from the `[lifecycle]` settings."""
    s = rt.settings.lifecycle
    return StageTimeouts(
        powering_on=s.powering_on_s,
        dhcp=s.dhcp_s,
        script=s.script_s,
        config=s.config_s,
        trust=s.trust_s,
        deprovisioning=s.deprovisioning_s,
        max_attempts=s.max_attempts,
        retry_base_s=s.retry_base_s,
        retry_max_s=s.retry_max_s,
    )


@asynccontextmanager
async def reconciler_service(rt: Runtime) -> AsyncIterator[None]:
    """The reconciler that drives provisioning runs."""
    reconciler = Reconciler(
        rt.store,
        rt.events,
        rt.services["power"],
        make_trust_checker(rt.store),
        instance=rt.instance,
        timeouts=stage_timeouts(rt),
        interval=rt.settings.lifecycle.interval_s,
    )
    await reconciler.start()
    rt.services["reconciler"] = reconciler
    try:
        yield
    finally:
        rt.services.pop("reconciler", None)
        await reconciler.stop()


SERVICES: list[tuple[str, ServiceFactory]] = [
    ("web", web_service),
    ("talos-config", config_service),
    ("power", power_service),
    ("trustd", trustd_service),
    ("reconciler", reconciler_service),
]
