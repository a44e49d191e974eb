"""The one place a power driver is chosen by name."""

from __future__ import annotations

from collections.abc import MutableMapping

from provisioner.events import EventSink
from provisioner.power.base import BmcCredentials, BmcUnsupported, PowerDriver, PowerState
from provisioner.power.calls import BlockingCalls
from provisioner.power.fake import FakePowerDriver
from provisioner.power.ipmi import IpmiDriver
from provisioner.power.manual import ManualDriver
from provisioner.power.redfish import RedfishDriver
from provisioner.settings import PowerSettings

__all__ = ["DRIVER_NAMES", "make_driver"]

DRIVER_NAMES = ("ipmi", "redfish", "manual", "fake")


def make_driver(
    credentials: BmcCredentials,
    settings: PowerSettings,
    *,
    calls: BlockingCalls | None = None,
    events: EventSink,
    fakes: MutableMapping[str, FakePowerDriver] | None = None,
) -> PowerDriver:
    """Build the driver named by `credentials.driver`.

    `calls` is the shared thread/lock discipline (one per service; a private one is made
    when omitted). `fakes` keeps fake BMCs alive between calls so their state persists;
    fake options: `initial` (`on`/`off`), `transition_s`. An unknown name raises
    `BmcUnsupported`.
    """
    name = credentials.driver
    if name in {"ipmi", "redfish"}:
        shared = calls or BlockingCalls(concurrency=settings.concurrency, timeout_s=settings.timeout_s)
        if name == "ipmi":
            return IpmiDriver(credentials, shared)
        return RedfishDriver(credentials, shared)
    if name == "manual":
        return ManualDriver(credentials, events)
    if name == "fake":
        if fakes is not None and credentials.label in fakes:
            return fakes[credentials.label]
        opts = credentials.options
        fake = FakePowerDriver(
            credentials,
            initial=PowerState(str(opts.get("initial", "off"))),
            transition_s=float(str(opts.get("transition_s", 0.0))),
        )
        if fakes is not None:
            fakes[credentials.label] = fake
        return fake
    raise BmcUnsupported(
        credentials.label, f"unknown power driver {name!r}", f"use one of {', '.join(DRIVER_NAMES)}"
    )
