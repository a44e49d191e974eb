"""The reconciler against a real (SQLite) store, a behavioural power port and recorded signals.

The signals other parts produce (DHCP and script events, the web layer's config
transition, the node's certificate) are recorded here the way those parts write them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from provisioner import lifecycle
from provisioner.events import Event, MemoryEventSink, utcnow
from provisioner.inventory import apply_inventory, load_inventory
from provisioner.lifecycle import Signal, StageTimeouts
from provisioner.reconciler import Reconciler, TrustVerdict
from provisioner.store.records import MachineRecord
from provisioner.store.repository import Store

INVENTORY = "\n---\n".join(
    f"kind: Machine\nname: {name}\nmacs: [52:54:00:00:00:0{i}]\nbmc: {{driver: fake}}"
    for i, name in enumerate(["good1", "good2", "deadbmc", "nopxe"], 1)
)

FAST = StageTimeouts(
    powering_on=5, dhcp=0.4, script=5, config=5, trust=5, max_attempts=2, retry_base_s=0.2, retry_max_s=0.2
)


class Power:
    """Behavioural power port: records calls, fails for named machines."""

    def __init__(self, broken: set[str]) -> None:
        self.broken = broken
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, machine: MachineRecord, action: str) -> None:
        self.calls.append((machine.name, action))
        await asyncio.sleep(0)
        if machine.name in self.broken:
            raise RuntimeError(
                f"BMC {machine.name}-bmc:623 rejected the credentials (check username/password)"
            )


async def boot_signals(store: Store, name: str) -> None:
    """What DHCP, the web layer and the node do for a machine that boots."""
    now = utcnow()
    await store.append_events(
        [Event(kind="dhcp.ack", at=now, machine=name), Event(kind="boot.script", at=now, machine=name)]
    )
    machine = await store.get_machine(name)
    assert machine is not None
    assert await lifecycle.move(store, machine, Signal.CONFIG_SERVED, "config fetched", now=now)


async def run_until(
    rec: Reconciler, store: Store, done: object, *, seconds: float = 8.0
) -> dict[str, MachineRecord]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        await rec.tick()
        await rec.settle()
        machines = {m.name: m for m in await store.list_machines()}
        if done(machines) or loop.time() > deadline:  # type: ignore[operator]
            return machines
        await asyncio.sleep(0.05)


@pytest.fixture
async def seeded(sqlite_store: Store, tmp_path: Path) -> Store:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    await apply_inventory(sqlite_store, load_inventory([path]))
    return sqlite_store


async def trusted(machine: MachineRecord) -> TrustVerdict:
    return TrustVerdict(ok=True, reason="cert ok")


async def test_run_with_a_dead_bmc_and_a_machine_that_never_pxe_boots(seeded: Store) -> None:
    store = seeded
    power = Power(broken={"deadbmc"})
    rec = Reconciler(store, MemoryEventSink(), power, trusted, instance="test", timeouts=FAST, interval=0.05)
    for name in ("good1", "good2", "deadbmc", "nopxe"):
        await store.update_machine(name, desired="provisioned")

    async def signals() -> None:
        while True:
            for m in await store.list_machines():
                if m.name.startswith("good") and m.state == "Netbooting":
                    await boot_signals(store, m.name)
            await asyncio.sleep(0.05)

    helper = asyncio.create_task(signals())
    try:
        machines = await run_until(
            rec,
            store,
            lambda ms: all(m.state == "Provisioned" or m.desired == "none" for m in ms.values()),
            seconds=10,
        )
    finally:
        helper.cancel()
    assert machines["good1"].state == "Provisioned" and machines["good1"].installed
    assert machines["good2"].state == "Provisioned"
    assert machines["deadbmc"].state == "Failed"
    assert "rejected the credentials" in machines["deadbmc"].state_reason
    assert machines["nopxe"].state == "Failed"
    assert "never PXE-booted" in machines["nopxe"].state_reason
    # bounded retries: two attempts each, then the run gives up (no loop)
    assert machines["deadbmc"].desired == "none" and machines["nopxe"].desired == "none"
    assert power.calls.count(("deadbmc", "pxe_on")) == 2
    assert power.calls.count(("nopxe", "pxe_on")) == 2
    assert power.calls.count(("good1", "pxe_on")) == 1
    # every transition is an event, with the reason
    trail = [e.message for e in reversed(await store.list_events(machine="nopxe", kind="machine.transition"))]
    assert trail[0].startswith("Registered -> PoweringOn")
    assert any("Failed -> PoweringOn: retry 2" in t for t in trail)
    assert [e.kind for e in await store.list_events(machine="deadbmc", kind="machine.gave_up")] == [
        "machine.gave_up"
    ]
    # nothing more happens afterwards
    before = len(power.calls)
    await run_until(rec, store, lambda _: False, seconds=0.5)
    assert len(power.calls) == before


async def test_trust_gates_provisioned(seeded: Store) -> None:
    store = seeded
    verdicts = iter([TrustVerdict(False, "connection refused"), TrustVerdict(True, "ok")])

    async def trust(machine: MachineRecord) -> TrustVerdict:
        return next(verdicts)

    rec = Reconciler(
        store, MemoryEventSink(), Power(set()), trust, instance="t", timeouts=FAST, interval=0.05
    )
    await store.update_machine("good1", desired="provisioned")
    await run_until(rec, store, lambda ms: ms["good1"].state == "Netbooting")
    await boot_signals(store, "good1")
    ms = await run_until(rec, store, lambda ms: ms["good1"].state == "ConfigServed", seconds=0.2)
    assert ms["good1"].state == "ConfigServed"  # first check failed: not trusted yet
    assert not ms["good1"].installed
    ms = await run_until(rec, store, lambda ms: ms["good1"].state == "Provisioned", seconds=10)
    assert ms["good1"].state == "Provisioned"
    assert ms["good1"].installed
    assert ms["good1"].summary().boot_from_disk


async def test_deprovision_and_reprovision(seeded: Store) -> None:
    store = seeded
    power = Power(set())
    rec = Reconciler(store, MemoryEventSink(), power, trusted, instance="t", timeouts=FAST, interval=0.05)
    await store.update_machine("good1", desired="provisioned")
    await run_until(rec, store, lambda ms: ms["good1"].state == "Netbooting")
    await boot_signals(store, "good1")
    await run_until(rec, store, lambda ms: ms["good1"].state == "Provisioned")
    await store.update_machine("good1", desired="reprovision")
    ms = await run_until(rec, store, lambda ms: ms["good1"].state == "Netbooting")
    assert ms["good1"].state == "Netbooting"
    assert not ms["good1"].installed  # must netboot again, not boot its old disk
    assert ("good1", "off") in power.calls
    await store.update_machine("good1", desired="deprovisioned")
    ms = await run_until(
        rec, store, lambda ms: ms["good1"].state == "Registered" and ms["good1"].desired == "none"
    )
    assert ms["good1"].state == "Registered"
    assert power.calls[-1] == ("good1", "off")


async def test_second_instance_does_not_drive_a_claimed_machine(seeded: Store) -> None:
    store = seeded
    p1, p2 = Power(set()), Power(set())
    r1 = Reconciler(store, MemoryEventSink(), p1, trusted, instance="one", timeouts=FAST)
    r2 = Reconciler(store, MemoryEventSink(), p2, trusted, instance="two", timeouts=FAST)
    await store.update_machine("good1", desired="provisioned")
    await r1.tick()
    await r2.tick()
    await r1.settle()
    await r2.settle()
    await r1.tick()
    await r2.tick()
    await r1.settle()
    await r2.settle()
    assert p1.calls == [("good1", "pxe_on")]
    assert p2.calls == []
    assert (await store.get_machine("good1")).owner == "one"  # type: ignore[union-attr]


async def test_failing_deprovision_is_bounded_not_a_loop(seeded: Store) -> None:
    """A BMC that refuses power off: deprovisioning retries with backoff, then gives up."""
    store = seeded
    power = Power(broken={"deadbmc"})
    rec = Reconciler(store, MemoryEventSink(), power, trusted, instance="t", timeouts=FAST, interval=0.05)
    await store.update_machine("deadbmc", desired="provisioned")
    await run_until(rec, store, lambda ms: ms["deadbmc"].desired == "none", seconds=10)
    power.calls.clear()
    await store.update_machine("deadbmc", desired="deprovisioned", attempts=0)
    ms = await run_until(rec, store, lambda ms: ms["deadbmc"].desired == "none", seconds=10)
    m = ms["deadbmc"]
    assert m.state == "Failed"
    assert m.state_reason.startswith("deprovisioning: power off failed")
    assert power.calls.count(("deadbmc", "off")) == FAST.max_attempts
    before = len(power.calls)
    await run_until(rec, store, lambda _: False, seconds=0.5)
    assert len(power.calls) == before
    assert power.calls.count(("deadbmc", "pxe_on")) == 0
    # the operator asks again: a fresh, immediate run (attempts reset by the request)
    await store.update_machine("deadbmc", desired="provisioned", attempts=0)
    ms = await run_until(rec, store, lambda ms: ms["deadbmc"].desired == "none", seconds=10)
    assert power.calls.count(("deadbmc", "pxe_on")) == FAST.max_attempts


async def test_a_restarted_daemon_resumes_where_the_last_one_stopped(seeded: Store) -> None:
    """State lives in the database: a new reconciler with the same instance name continues."""
    store = seeded
    first = Reconciler(store, MemoryEventSink(), Power(set()), trusted, instance="host-a", timeouts=FAST)
    await store.update_machine("good1", desired="provisioned")
    await run_until(first, store, lambda ms: ms["good1"].state == "Netbooting")
    await first.stop()  # the daemon goes away mid-run
    await boot_signals(store, "good1")  # the machine carries on booting meanwhile
    power = Power(set())
    second = Reconciler(store, MemoryEventSink(), power, trusted, instance="host-a", timeouts=FAST)
    ms = await run_until(second, store, lambda ms: ms["good1"].state == "Provisioned")
    assert ms["good1"].state == "Provisioned"
    assert power.calls == []  # no second power-on: it resumed, it did not restart the run
    # a different instance must not take over while the claim is fresh
    other = Reconciler(store, MemoryEventSink(), Power(set()), trusted, instance="host-b", timeouts=FAST)
    await store.update_machine("good2", desired="provisioned")
    await second.tick()
    await second.settle()
    await other.tick()
    await other.settle()
    assert (await store.get_machine("good2")).owner == "host-a"  # type: ignore[union-attr]
