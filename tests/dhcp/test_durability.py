"""docs/threats.md G1: kill -9 the server under load; every ACKed lease survives the restart."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.dhcp.netns import PYTHON, REPO, in_ns, segment, start_server, stop_server

pytestmark = pytest.mark.netns

SETTINGS = """
[dhcp]
mode = "full"
interfaces = ["vs"]
relay_agents = ["10.77.0.2"]
[[dhcp.subnet]]
cidr = "10.77.0.0/16"
pool = "10.77.1.0-10.77.200.255"
gateway = "10.77.0.1"
lease_time = 3600
"""


def test_kill_9_after_acks_loses_nothing(tmp_path: Path) -> None:
    with segment() as seg:
        seg.add_ns("s")
        seg.add_ns("c")
        seg.link("s", "vs", "c", "vc")
        seg.addr("s", "vs", "10.77.0.1/16")
        seg.addr("c", "vc", "10.77.0.2/16")
        db = tmp_path / "leases.db"
        url = f"sqlite+aiosqlite:///{db}"
        server = start_server(seg, "s", tmp_path, SETTINGS, [], "--db-url", url)
        acks = tmp_path / "acks.txt"
        load = seg.spawn(
            "c",
            [
                PYTHON,
                "-m",
                "tests.dhcp.relay_load",
                "dora",
                "--server",
                "10.77.0.1",
                "--giaddr",
                "10.77.0.2",
                "--count",
                "20000",
                "--window",
                "128",
                "--duration",
                "30",
                "--out",
                str(acks),
            ],
            cwd=str(REPO),
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        # Let ACKs flow, then SIGKILL the server mid-storm.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if acks.exists() and len(acks.read_text().splitlines()) >= 1500:
                break
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        time.sleep(0.5)
        load.kill()
        load.wait(10)
        acked = [line.split() for line in acks.read_text().splitlines() if len(line.split()) == 3]
        assert len(acked) >= 1500
        with sqlite3.connect(db) as conn:
            rows = dict(conn.execute("select ip, mac from lease where state = 'bound'").fetchall())
        lost = [(mac, ip) for mac, ip, _ in acked if rows.get(ip) != mac]
        assert lost == []
        assert len({ip for _, ip, _ in acked}) == len(acked)  # never the same address twice
        # After the restart the clients keep their addresses (INIT-REBOOT gets ACK, same ip).
        server = start_server(seg, "s", tmp_path, SETTINGS, [], "--db-url", url, name="srv2")
        sample = tmp_path / "sample.txt"
        sample.write_text("".join(f"{mac} {ip}\n" for mac, ip, _ in acked[:: max(1, len(acked) // 50)]))
        res = in_ns(
            seg.ns("c"),
            "env",
            f"PYTHONPATH={REPO}",
            PYTHON,
            "-m",
            "tests.dhcp.relay_load",
            "reboot",
            "--server",
            "10.77.0.1",
            "--giaddr",
            "10.77.0.2",
            "--inp",
            str(sample),
            timeout=120,
        )
        lines = res.stdout.splitlines()
        assert lines
        for line in lines:
            _mac, ip, verdict, *rest = line.split()
            assert verdict == "ACK" and rest == [ip], line
        # New clients never get an address that was ACKed before the crash.
        fresh = tmp_path / "fresh.txt"
        in_ns(
            seg.ns("c"),
            "env",
            f"PYTHONPATH={REPO}",
            PYTHON,
            "-m",
            "tests.dhcp.relay_load",
            "dora",
            "--server",
            "10.77.0.1",
            "--giaddr",
            "10.77.0.2",
            "--count",
            "300",
            "--prefix",
            "68",
            "--duration",
            "30",
            "--out",
            str(fresh),
            timeout=120,
        )
        fresh_ips = {line.split()[1] for line in fresh.read_text().splitlines()}
        assert len(fresh_ips) >= 290
        assert not fresh_ips & {ip for _, ip, _ in acked}
        counters = stop_server(server)
        assert counters["leases_loaded"] >= len(acked)
        assert counters["lease_rows_skipped"] == 0
