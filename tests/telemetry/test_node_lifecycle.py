"""The lifecycle driven by what the node says: real gRPC Talos events into the telemetry
service, the reconciler's hook, a real (SQLite) store, and the PXE boot decision."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from provisioner.directory import MachineDirectory
from provisioner.events import MemoryEventSink
from provisioner.inventory import apply_inventory, load_inventory
from provisioner.reconciler import Reconciler, TrustVerdict
from provisioner.settings import Settings
from provisioner.store.records import MachineRecord
from provisioner.store.repository import Store
from provisioner.talos.api.pb.common import common_pb2
from provisioner.talos.api.pb.machine import machine_pb2 as m
from provisioner.telemetry.service import TelemetryPart, node_progress_hook
from provisioner.web.policy import BootAction, decide_boot
from tests.conftest import free_port
from tests.telemetry.test_sink import publish
from tests.unit.test_reconciler import FAST, Power, boot_signals, run_until


async def never_trusted(machine: MachineRecord) -> TrustVerdict:
    return TrustVerdict(ok=False, reason="connection refused")


@pytest.fixture
async def node(sqlite_store: Store, tmp_path: Path) -> AsyncIterator[tuple[Store, Reconciler, int]]:
    inv = tmp_path / "inv.yaml"
    inv.write_text("kind: Machine\nname: n1\nmacs: [52:54:00:00:00:01]\nip: 127.0.0.1\nbmc: {driver: fake}\n")
    await apply_inventory(sqlite_store, load_inventory([inv]))
    events_port = free_port()
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path),
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "telemetry": {"events_listen": f":{events_port}", "logs_listen": f"127.0.0.1:{free_port()}"},
        }
    )
    sink = MemoryEventSink()
    rec = Reconciler(
        sqlite_store, sink, Power(set()), never_trusted, instance="t", timeouts=FAST, interval=0.05
    )
    directory = MachineDirectory(sqlite_store)
    await directory.refresh()
    # Wired as the daemon wires it (provisioner/daemon/build.py): the reconciler's hook.
    part = TelemetryPart(
        settings.telemetry,
        settings.http.host_port[0],
        sink,
        machines=directory.current,
        leases=sqlite_store,
        progress=node_progress_hook(rec),
    )
    await sqlite_store.update_machine("n1", desired="provisioned")
    await run_until(rec, sqlite_store, lambda ms: ms["n1"].state == "Netbooting")
    await boot_signals(sqlite_store, "n1")  # DHCP, script, config fetch: ConfigServed
    await part.start()
    try:
        yield sqlite_store, rec, events_port
    finally:
        await part.stop()


async def wait_state(store: Store, state: str, within: float) -> tuple[MachineRecord, float]:
    start = time.monotonic()
    while True:
        record = await store.get_machine("n1")
        assert record is not None
        if record.state == state or time.monotonic() - start > within:
            return record, time.monotonic() - start
        await asyncio.sleep(0.01)


async def test_install_reboot_boot_from_disk_and_the_pxe_answer(
    node: tuple[Store, Reconciler, int],
) -> None:
    store, _, port = node
    record = await store.get_machine("n1")
    assert record is not None
    assert decide_boot(record).action == BootAction.HOLD  # ConfigServed: not yet proven installed
    # Talos: the install sequence runs on every boot; the install phase is the signal.
    await publish(
        port,
        m.SequenceEvent(sequence="initialize", action=m.SequenceEvent.START),
        m.SequenceEvent(sequence="initialize", action=m.SequenceEvent.STOP),
        m.SequenceEvent(sequence="install", action=m.SequenceEvent.START),
        m.PhaseEvent(phase="install", action=m.PhaseEvent.START),
    )
    record, _ = await wait_state(store, "Installing", 1.0)
    assert record.state == "Installing"
    assert decide_boot(record).action == BootAction.HOLD  # installing: never "disk" yet (Sidero #961)
    await publish(
        port,
        m.PhaseEvent(phase="install", action=m.PhaseEvent.STOP),
        m.PhaseEvent(phase="kexec", action=m.PhaseEvent.START),
    )
    record, _ = await wait_state(store, "Rebooting", 1.0)
    assert record.state == "Rebooting"
    assert record.installed
    decision = decide_boot(record)
    assert (decision.action, decision.reason) == (BootAction.DISK, "installed")
    await publish(port, m.SequenceEvent(sequence="initialize", action=m.SequenceEvent.START))
    record, _ = await wait_state(store, "BootedFromDisk", 1.0)
    assert record.state == "BootedFromDisk"
    assert decide_boot(record).action == BootAction.DISK  # every PXE request until reprovision
    assert "node reports: sequence initialize START" in record.state_reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            m.ConfigValidationErrorEvent(error="1 error occurred:\n\t* install disk /dev/sdz not found"),
            "config validation error: 1 error occurred:\n\t* install disk /dev/sdz not found",
        ),
        (
            m.SequenceEvent(
                sequence="install",
                action=m.SequenceEvent.NOOP,
                error=common_pb2.Error(code=common_pb2.FATAL, message="sequence failed: error installing"),
            ),
            "sequence install: sequence failed: error installing",
        ),
    ],
)
async def test_a_node_error_fails_the_stage_within_one_second(
    node: tuple[Store, Reconciler, int], message: object, reason: str
) -> None:
    store, _, port = node
    await publish(
        port,
        m.SequenceEvent(sequence="install", action=m.SequenceEvent.START),
        m.PhaseEvent(phase="install", action=m.PhaseEvent.START),
    )
    record, _ = await wait_state(store, "Installing", 1.0)
    assert record.state == "Installing"
    sent = time.monotonic()
    await publish(port, message)
    record, _ = await wait_state(store, "Failed", 1.0)
    elapsed = time.monotonic() - sent
    assert record.state == "Failed", record.state
    assert elapsed < 1.0
    assert record.state_reason == f"node reports: {reason}"
