"""The reconciler's decision as a pure function of (machine, now, timeouts): no store, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from provisioner.lifecycle import Signal, StageTimeouts
from provisioner.model import Desired
from provisioner.reconciler import (
    DEPROVISIONING_FAILED,
    CheckNetboot,
    CheckTrust,
    Deprovision,
    Fail,
    GiveUp,
    Move,
    PowerOn,
    TrustVerdict,
    after_deprovision,
    after_node_report,
    after_power_on,
    after_trust,
    decide,
    netboot_verdict,
    wants_attention,
)
from provisioner.store.records import BmcInfo, EventRecord, MachineRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T = StageTimeouts(
    powering_on=10,
    dhcp=20,
    script=30,
    config=40,
    trust=50,
    installing=70,
    rebooting=80,
    booted=90,
    deprovisioning=60,
    max_attempts=2,
    retry_base_s=5,
)
FAKE_BMC = BmcInfo(driver="fake", address="bmc", port=623, username="u", password_ref="", has_password=False)


def m(state: str, desired: Desired = Desired.NONE, *, ago: float = 0.0, **kw: object) -> MachineRecord:
    return MachineRecord(
        name="m1",
        macs=("52:54:00:00:00:01",),
        state=state,
        desired=desired.value,
        state_since=T0 - timedelta(seconds=ago),
        **kw,  # type: ignore[arg-type]
    )


def ev(kind: str, after_s: float) -> EventRecord:
    return EventRecord(1, T0 + timedelta(seconds=after_s), kind, "m1", "info", "system", "", {})


@pytest.mark.parametrize(
    ("machine", "actions"),
    [
        (m("Registered"), ()),
        (m("Provisioned", Desired.PROVISIONED), ()),
        (
            m("Registered", Desired.PROVISIONED),
            (Move(Signal.PROVISION, "provision requested", {"attempts": 1, "installed": False}),),
        ),
        (
            m("Provisioned", Desired.REPROVISION),
            (Move(Signal.DEPROVISION, "reprovision requested", {"attempts": 1}),),
        ),
        (
            m("Registered", Desired.REPROVISION),
            (
                Move(
                    Signal.PROVISION,
                    "provision requested",
                    {"attempts": 1, "installed": False, "desired": "provisioned"},
                ),
            ),
        ),
        (
            m("Netbooting", Desired.DEPROVISIONED),
            (Move(Signal.DEPROVISION, "deprovision requested", {"attempts": 1}),),
        ),
        (m("Deprovisioning", ago=5), (Deprovision(),)),
        (m("Deprovisioning", ago=61), (Fail(f"{DEPROVISIONING_FAILED}timed out"),)),
        (m("PoweringOn", Desired.PROVISIONED, ago=5), (PowerOn(),)),
        (m("PoweringOn", Desired.PROVISIONED, ago=11), (Fail("PoweringOn took longer than 10s"),)),
        (m("Netbooting", Desired.PROVISIONED, ago=5), (CheckNetboot(T0 - timedelta(seconds=5)),)),
        (m("ConfigServed", Desired.PROVISIONED), (CheckTrust(),)),
        # the node's own install stages: the trust check still runs, each under its budget
        (m("Installing", Desired.PROVISIONED, ago=5), (CheckTrust(),)),
        (m("Installing", Desired.PROVISIONED, ago=71), (Fail("Installing took longer than 70s"),)),
        (m("Rebooting", Desired.PROVISIONED, ago=79), (CheckTrust(),)),
        (m("Rebooting", Desired.PROVISIONED, ago=81), (Fail("Rebooting took longer than 80s"),)),
        (m("BootedFromDisk", Desired.PROVISIONED, ago=5), (CheckTrust(),)),
        (m("BootedFromDisk", Desired.PROVISIONED, ago=91), (Fail("BootedFromDisk took longer than 90s"),)),
        (
            m("Installing", Desired.DEPROVISIONED),
            (Move(Signal.DEPROVISION, "deprovision requested", {"attempts": 1}),),
        ),
        (
            m("Trusted", Desired.PROVISIONED),
            (Move(Signal.SETTLED, "installed and trusted", {"installed": True, "desired": "provisioned"}),),
        ),
        (
            m("Failed", Desired.PROVISIONED),
            (Move(Signal.PROVISION, "provision requested again", {"attempts": 1}),),
        ),
        (m("Failed", Desired.PROVISIONED, ago=1, attempts=1), ()),  # backoff not over
        (
            m("Failed", Desired.PROVISIONED, ago=6, attempts=1, state_reason="x"),
            (Move(Signal.RETRY, "retry 2 after: x", {"attempts": 2}),),
        ),
        (
            m("Failed", Desired.PROVISIONED, attempts=2, state_reason="x"),
            (GiveUp("giving up after 2 attempt(s): x"),),
        ),
    ],
)
def test_decide(machine: MachineRecord, actions: tuple[object, ...]) -> None:
    assert decide(machine, T0, T) == actions
    assert wants_attention(machine) == bool(actions) or machine.state == "Failed"


def test_a_failed_deprovision_retries_as_a_deprovision() -> None:
    failed = m("Failed", Desired.DEPROVISIONED, ago=6, attempts=1, state_reason=f"{DEPROVISIONING_FAILED}x")
    assert decide(failed, T0, T) == (
        Move(Signal.DEPROVISION, f"retry 2 after: {DEPROVISIONING_FAILED}x", {"attempts": 2}),
    )


@pytest.mark.parametrize(
    ("state", "signal", "action"),
    [
        ("ConfigServed", Signal.INSTALLING, Move(Signal.INSTALLING, "node reports: x", {})),
        ("Installing", Signal.INSTALLED, Move(Signal.INSTALLED, "node reports: x", {"installed": True})),
        ("ConfigServed", Signal.INSTALLED, Move(Signal.INSTALLED, "node reports: x", {"installed": True})),
        ("Rebooting", Signal.BOOTED, Move(Signal.BOOTED, "node reports: x", {})),
        ("Installing", None, Fail("node reports: x")),
        ("BootedFromDisk", None, Fail("node reports: x")),
        # late or repeated reports change nothing
        ("BootedFromDisk", Signal.INSTALLING, None),
        ("Provisioned", Signal.INSTALLED, None),
        ("Netbooting", Signal.BOOTED, None),
        ("Provisioned", None, None),  # an error after the run is not the run's failure
        ("Netbooting", None, None),
    ],
)
def test_after_node_report(state: str, signal: Signal | None, action: object) -> None:
    assert after_node_report(m(state, Desired.PROVISIONED), signal, "x") == action


def test_netboot_verdict_names_the_stalled_step() -> None:
    since = T0
    assert netboot_verdict(since, T0 + timedelta(seconds=19), [], T) is None
    assert "never PXE-booted" in str(netboot_verdict(since, T0 + timedelta(seconds=21), [], T))
    dhcp = [ev("dhcp.ack", 10)]
    assert netboot_verdict(since, T0 + timedelta(seconds=39), dhcp, T) is None
    assert "never fetched its iPXE script" in str(netboot_verdict(since, T0 + timedelta(seconds=41), dhcp, T))
    script = [*dhcp, ev("boot.script", 20)]
    assert netboot_verdict(since, T0 + timedelta(seconds=59), script, T) is None
    assert "not its config" in str(netboot_verdict(since, T0 + timedelta(seconds=61), script, T))


def test_outcomes_of_io_steps() -> None:
    manual = m("PoweringOn")
    assert after_power_on(manual, None) == Move(
        Signal.POWERED_ON, "no BMC: waiting for someone to power it on by hand"
    )
    assert after_power_on(m("PoweringOn", bmc=FAKE_BMC), None) == Move(
        Signal.POWERED_ON, "set PXE once and powered on"
    )
    assert after_power_on(manual, "BMC said no") == Fail("power on failed: BMC said no")
    assert after_trust(TrustVerdict(ok=False, reason="refused")) is None
    assert after_trust(TrustVerdict(ok=True)) == Move(
        Signal.TRUSTED, "node certificate chains to the cluster OS CA"
    )
    assert after_deprovision(m("Deprovisioning", Desired.REPROVISION), None, 2) == Move(
        Signal.DEPROVISIONED,
        "powered off, 2 lease(s) released, config tokens revoked",
        {"installed": False, "desired": "provisioned", "attempts": 0},
    )
    assert after_deprovision(m("Deprovisioning"), "off failed", 0) == Fail(
        f"{DEPROVISIONING_FAILED}power off failed: off failed"
    )
