"""`provisioner serve` end to end: a real gRPC client publishes Talos events to the daemon's
sink and a TCP client sends kernel log lines; `machines events` and `machines logs` show them."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provisioner.talos.api.pb.machine import machine_pb2 as m
from provisioner.telemetry.pb.events import events_pb2_grpc
from tests.power.power_fixtures import PROVISIONER, Daemon, daemon_config, free_tcp_port, start_daemon, stop
from tests.telemetry.test_sink import kmsg, request


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, int, int]]:
    config, port = daemon_config(tmp_path, telemetry=True)
    events_port, logs_port = free_tcp_port(), free_tcp_port()
    with config.open("a") as f:
        f.write(f'\n[telemetry]\nevents_listen = ":{events_port}"\nlogs_listen = "127.0.0.1:{logs_port}"\n')
    d = start_daemon(config, port)
    try:
        inv = tmp_path / "inventory.yaml"
        inv.write_text("kind: Machine\nname: node1\nmacs: [52:54:00:aa:00:01]\nip: 127.0.0.1\n")
        done = d.cli("inventory", "apply", str(inv))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 20
        while True:  # the sink is up once its port accepts
            try:
                socket.create_connection(("127.0.0.1", events_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        yield d, events_port, logs_port
    finally:
        stop(d.proc)


async def _publish(port: int, message: object) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await events_pb2_grpc.EventSinkServiceStub(channel).Publish(request(message), timeout=5)


def test_events_show_in_machines_events_within_one_second(daemon: tuple[Daemon, int, int]) -> None:
    d, events_port, logs_port = daemon
    # The machine index (and the sink's address book) reload every 2 s after the apply.
    time.sleep(2.5)
    sent = time.monotonic()
    asyncio.run(_publish(events_port, m.PhaseEvent(phase="install", action=m.PhaseEvent.START)))
    seen_by = None
    while time.monotonic() - sent < 5:
        asked = time.monotonic()
        out = d.cli("machines", "events", "node1", "--json")
        assert out.returncode == 0, out.stderr
        if any(
            e["kind"] == "node.event" and e["message"] == "phase install START"
            for e in json.loads(out.stdout)
        ):
            seen_by = asked - sent
            break
    assert seen_by is not None, "the event never showed"
    print(f"event visible to a `machines events` started {seen_by:.3f}s after Publish returned")
    assert seen_by < 1.0

    with socket.create_connection(("127.0.0.1", logs_port)) as conn:
        conn.sendall(kmsg(7, "virtio_blk virtio2: [vda] 20971520 512-byte logical blocks"))
        time.sleep(0.3)
    out = d.cli("machines", "logs", "node1")
    assert out.returncode == 0, out.stderr
    assert "kern.info: virtio_blk virtio2: [vda] 20971520 512-byte logical blocks" in out.stdout
    follow = subprocess.Popen(
        [str(PROVISIONER), "machines", "logs", "node1", "--follow", "--json", "-n", "1"],
        env=d.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert follow.stdout is not None
        # The newest kept line first: the CLI is connected once it prints it.
        assert json.loads(follow.stdout.readline())["seq"] == 7
        with socket.create_connection(("127.0.0.1", logs_port)) as conn:
            conn.sendall(kmsg(8, "followed line"))
        line = json.loads(follow.stdout.readline())
        assert line["msg"] == "followed line"
        assert line["seq"] == 8
    finally:
        stop(follow)
