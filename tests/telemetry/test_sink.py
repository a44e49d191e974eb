"""The telemetry service on real sockets: a real gRPC client publishing Talos events, kernel
log lines over TCP, attribution by source address, drops, bounds, and the 1 s budget."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2

from provisioner.eventlog import DatabaseEventSink
from provisioner.events import MemoryEventSink
from provisioner.matching import MachineIndex
from provisioner.model import MachineSummary
from provisioner.settings import Settings
from provisioner.store.repository import Store
from provisioner.talos.api.pb.common import common_pb2
from provisioner.talos.api.pb.machine import machine_pb2 as m
from provisioner.telemetry.hub import TelemetryHub
from provisioner.telemetry.pb.events import events_pb2, events_pb2_grpc
from provisioner.telemetry.progress import NodeSignal, Reading
from provisioner.telemetry.service import TelemetryPart
from tests.conftest import free_port


def request(message: object, event_id: str = "ev1") -> events_pb2.EventRequest:
    data = any_pb2.Any()
    data.Pack(message)  # type URL type.googleapis.com/machine.X, as Talos's anypb.New
    return events_pb2.EventRequest(data=data, id=event_id, actor_id="")


class Env:
    def __init__(
        self,
        part: TelemetryPart,
        store: Store,
        sink: DatabaseEventSink,
        readings: list[tuple[str, Reading, float]],
    ) -> None:
        self.part = part
        self.store = store
        self.sink = sink
        self.readings = readings
        self.index = MachineIndex([MachineSummary(name="n1", macs=("52:54:00:00:00:01",), ip="127.0.0.1")])

    @property
    def hub(self) -> TelemetryHub:
        return self.part.hub


@pytest.fixture
async def env(sqlite_store: Store, tmp_path: Path) -> AsyncIterator[tuple[Env, int, int]]:
    events_port, logs_port = free_port(), free_port()
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path),
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "telemetry": {
                "events_listen": f":{events_port}",
                "logs_listen": f"127.0.0.1:{logs_port}",
                "log_lines": 10,
                "source_burst": 50,
                "source_rate": 1,
            },
        }
    )
    sink = DatabaseEventSink(sqlite_store, interval=0.05)
    await sink.start()
    readings: list[tuple[str, Reading, float]] = []

    async def hook(machine: str, reading: Reading) -> None:
        readings.append((machine, reading, time.monotonic()))

    holder: list[Env] = []
    part = TelemetryPart(
        settings.telemetry,
        settings.http.host_port[0],
        sink,
        machines=lambda: holder[0].index,
        leases=sqlite_store,
        progress=hook,
    )
    holder.append(Env(part, sqlite_store, sink, readings))
    await part.start()
    try:
        yield holder[0], events_port, logs_port
    finally:
        await part.stop()
        await sink.stop()


async def publish(port: int, *messages: object, host: str = "127.0.0.1") -> None:
    async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
        stub = events_pb2_grpc.EventSinkServiceStub(channel)
        for i, message in enumerate(messages):
            await stub.Publish(request(message, f"id{i}"), timeout=5)


async def node_events(store: Store, machine: str = "n1") -> list[str]:
    rows = await store.list_events(machine=machine, kind="node.event", limit=1000)
    return [r.message for r in reversed(rows)]


async def test_talos_events_are_stored_as_readable_lines_within_one_second(env: tuple[Env, int, int]) -> None:
    e, events_port, _ = env
    sent = time.monotonic()
    await publish(
        events_port,
        m.SequenceEvent(sequence="install", action=m.SequenceEvent.START),
        m.PhaseEvent(phase="install", action=m.PhaseEvent.START),
        m.TaskEvent(task="install", action=m.TaskEvent.STOP),
        m.ServiceStateEvent(
            service="apid", action=m.ServiceStateEvent.RUNNING, message="Health check successful"
        ),
        m.MachineStatusEvent(stage=m.MachineStatusEvent.INSTALLING),
        m.AddressEvent(hostname="talos-1", addresses=["10.0.0.5"]),
    )
    lines: list[str] = []
    while time.monotonic() - sent < 1.0:
        lines = await node_events(e.store)
        if len(lines) == 6:
            break
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - sent
    assert lines == [
        "sequence install START",
        "phase install START",
        "task install STOP",
        "service apid RUNNING: Health check successful",
        "machine INSTALLING (not ready)",
        "addresses of talos-1: 10.0.0.5",
    ], f"after {elapsed:.3f}s"
    assert elapsed < 1.0
    # The lifecycle hook heard "installing" (phase install in sequence install).
    assert [r.signal for _, r, _ in e.readings][:1] == [NodeSignal.INSTALLING]


async def test_error_event_reaches_the_lifecycle_hook_within_one_second(env: tuple[Env, int, int]) -> None:
    e, events_port, _ = env
    sent = time.monotonic()
    await publish(events_port, m.ConfigValidationErrorEvent(error="machine.install.disk: /dev/sdz not found"))
    while not e.readings and time.monotonic() - sent < 1.0:
        await asyncio.sleep(0.01)
    assert e.readings, "no reading within 1 s"
    machine, reading, at = e.readings[0]
    assert (machine, reading.signal) == ("n1", NodeSignal.ERROR)
    assert "/dev/sdz not found" in reading.message
    assert at - sent < 1.0


async def test_failed_install_sequence_is_an_error(env: tuple[Env, int, int]) -> None:
    e, events_port, _ = env
    failed = m.SequenceEvent(
        sequence="install",
        action=m.SequenceEvent.NOOP,
        error=common_pb2.Error(code=common_pb2.FATAL, message="sequence failed: disk /dev/vda not found"),
    )
    await publish(events_port, m.SequenceEvent(sequence="install", action=m.SequenceEvent.STOP), failed)
    for _ in range(100):
        if e.readings:
            break
        await asyncio.sleep(0.01)
    assert [(r.signal, r.message) for _, r, _ in e.readings] == [
        (NodeSignal.ERROR, "sequence install: sequence failed: disk /dev/vda not found")
    ]


async def test_unknown_source_is_counted_and_dropped(env: tuple[Env, int, int]) -> None:
    e, events_port, _ = env
    e.index = MachineIndex([])  # the machine's address is no longer known
    e.hub._refresh()  # the address book reloads soon after a miss  # type: ignore[misc]
    await asyncio.sleep(0.3)
    await publish(events_port, m.TaskEvent(task="x", action=m.TaskEvent.START))
    await asyncio.sleep(0.3)
    assert e.hub.counters["events_unknown_source"] == 1, dict(e.hub.counters)
    assert e.hub.counters["events_accepted"] == 0
    assert await node_events(e.store) == []


async def test_malformed_any_is_counted(env: tuple[Env, int, int]) -> None:
    e, events_port, _ = env
    bogus = events_pb2.EventRequest(data=any_pb2.Any(type_url="type.googleapis.com/machine.Nope", value=b"x"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{events_port}") as channel:
        await events_pb2_grpc.EventSinkServiceStub(channel).Publish(bogus, timeout=5)
    assert e.hub.counters["events_malformed"] == 1


async def test_per_source_bound(env: tuple[Env, int, int]) -> None:
    e, events_port, _ = env
    await publish(events_port, *[m.TaskEvent(task=f"t{i}") for i in range(80)])
    # burst 50, rate 1/s: the rest is dropped and counted, not stored.
    assert 50 <= e.hub.counters["events_accepted"] <= 52
    assert e.hub.counters["events_rate_limited"] >= 28
    # The writer task may be mid-flush: wait for it (it flushes every 50 ms here).
    stored: list[str] = []
    for _ in range(100):
        stored = await node_events(e.store)
        if len(stored) >= e.hub.counters["events_accepted"]:
            break
        await asyncio.sleep(0.02)
    assert len(stored) == e.hub.counters["events_accepted"]


def kmsg(i: int, msg: str) -> bytes:
    # The fields of Talos's jsonLinesSender for a kmsg packet (kmsg_log.go).
    return (
        json.dumps(
            {
                "facility": "kern",
                "seq": i,
                "clock": 1000 + i,
                "priority": "info",
                "msg": msg,
                "talos-time": "2026-12-02T06:00:00.000000001Z",
                "talos-level": "info",
            }
        ).encode()
        + b"\n"
    )


async def test_kernel_log_lines_go_to_a_bounded_ring(env: tuple[Env, int, int]) -> None:
    e, _, logs_port = env
    reader, writer = await asyncio.open_connection("127.0.0.1", logs_port)
    writer.write(b"".join(kmsg(i, f"line {i}") for i in range(15)) + b"not json\n" + b"x" * 20000 + b"\n")
    writer.write(kmsg(15, "last"))
    await writer.drain()
    ring = e.hub.ring("n1")
    for _ in range(200):
        if ring.total >= 16:
            break
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    del reader
    assert ring.total == 16
    assert [line.msg for line in ring.tail()] == [f"line {i}" for i in range(6, 15)] + ["last"]
    assert ring.tail()[0].facility == "kern"
    assert ring.tail()[0].seq == 6
    assert e.hub.counters["log_lines_malformed"] == 1
    assert e.hub.counters["log_lines_too_long"] == 1


async def test_follow_wakes_on_a_new_line(env: tuple[Env, int, int]) -> None:
    e, _, logs_port = env
    waiter = asyncio.create_task(e.hub.wait_lines("n1", 0, timeout=2.0))
    await asyncio.sleep(0.05)
    _, writer = await asyncio.open_connection("127.0.0.1", logs_port)
    writer.write(kmsg(1, "hello"))
    await writer.drain()
    lines = await waiter
    writer.close()
    assert [line.msg for line in lines] == ["hello"]


async def test_a_taken_port_is_a_one_line_startup_error(sqlite_store: Store, tmp_path: Path) -> None:
    import socket as socket_mod

    from provisioner.startup import StartupError

    with socket_mod.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings.model_validate(
            {
                "state_dir": str(tmp_path),
                "http": {"listen": f"127.0.0.1:{free_port()}"},
                "telemetry": {
                    "events_listen": f"127.0.0.1:{port}",
                    "logs_listen": f"127.0.0.1:{free_port()}",
                },
            }
        )
        part = TelemetryPart(
            settings.telemetry,
            settings.http.host_port[0],
            MemoryEventSink(),
            machines=lambda: MachineIndex([]),
            leases=sqlite_store,
        )
        with pytest.raises(StartupError, match=rf"^telemetry.events_listen 127.0.0.1:{port}: "):
            await part.start()
        await part.stop()
