"""Two server processes sharing one PostgreSQL database serve one segment (perfdhcp load).

The unique(ip) constraint decides races: no address is ever ACKed to two clients, and a
client keeps its address when the other instance answers it.
"""

from __future__ import annotations

import glob
import os
import subprocess
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.dhcp.netns import PYTHON, REPO, in_ns, segment, start_server, stop_server

SETTINGS = """
[dhcp]
mode = "full"
interfaces = ["v0"]
relay_agents = ["10.77.0.2", "10.77.0.4"]
[[dhcp.subnet]]
cidr = "10.77.0.0/16"
pool = "10.77.1.0-10.77.200.255"
gateway = "10.77.0.1"
lease_time = 3600
"""

pytestmark = [pytest.mark.postgres, pytest.mark.netns]


def unix_socket_url(tcp_url: str) -> str:
    """The same database over the server's unix socket (reachable from any netns)."""
    parsed = urlparse(tcp_url)
    port = parsed.port
    sockets = glob.glob(f"/tmp/pv-pg-*/.s.PGSQL.{port}")  # noqa: PTH207
    assert sockets, "PostgreSQL unix socket not found"
    directory = os.path.dirname(sockets[0])  # noqa: PTH120
    return f"postgresql+asyncpg://postgres@/{parsed.path.lstrip('/')}?host={directory}&port={port}"


def psql(tcp_url: str, query: str) -> list[list[str]]:
    parsed = urlparse(tcp_url)
    res = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(parsed.port),
            "-U",
            "postgres",
            "-d",
            parsed.path.lstrip("/"),
            "-At",
            "-F",
            " ",
            "-c",
            query,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [line.split() for line in res.stdout.splitlines()]


def test_two_instances_one_database(tmp_path: Path, pg_database_url: str) -> None:
    url = unix_socket_url(pg_database_url)
    with segment() as seg:
        for role in ("c", "a", "b", "l"):
            seg.add_ns(role)
        in_ns(seg.ns("c"), "ip", "link", "add", "br0", "type", "bridge")
        in_ns(seg.ns("c"), "ip", "link", "set", "br0", "up")
        for role in ("a", "b", "l"):
            seg.link(role, "v0", "c", f"p{role}")
            in_ns(seg.ns("c"), "ip", "link", "set", f"p{role}", "master", "br0")
        seg.addr("c", "br0", "10.77.0.2/16")
        seg.addr("a", "v0", "10.77.0.1/16")
        seg.addr("b", "v0", "10.77.0.3/16")
        seg.addr("l", "v0", "10.77.0.4/16")
        a = start_server(seg, "a", tmp_path, SETTINGS, [], "--db-url", url, "--instance", "a", name="a")
        b = start_server(seg, "b", tmp_path, SETTINGS, [], "--db-url", url, "--instance", "b", name="b")
        # perfdhcp (a relay on 10.77.0.2, broadcasting) and our recording relay client at once.
        perf = seg.spawn("c", ["perfdhcp", "-4", "-r", "300", "-p", "12", "-R", "100000", "-l", "br0"])
        acks = tmp_path / "acks.txt"
        in_ns(
            seg.ns("l"),
            "env",
            f"PYTHONPATH={REPO}",
            PYTHON,
            "-m",
            "tests.dhcp.relay_load",
            "dora",
            "--server",
            "255.255.255.255",
            "--giaddr",
            "10.77.0.4",
            "--count",
            "1500",
            "--window",
            "64",
            "--duration",
            "25",
            "--out",
            str(acks),
            timeout=90,
        )
        perf_out, perf_err = perf.communicate(timeout=60)
        assert "Rate:" in perf_out or "sent packets" in perf_out, perf_err[-2000:]
        records = [line.split() for line in acks.read_text().splitlines()]
        assert len(records) >= 1000
        owners: dict[str, set[str]] = defaultdict(set)
        for mac, ip, _server in records:
            owners[ip].add(mac)
        assert {ip: macs for ip, macs in owners.items() if len(macs) > 1} == {}
        servers = {server for _, _, server in records}
        assert servers == {"10.77.0.1", "10.77.0.3"}  # both instances answered
        # The database agrees: every ACK we saw is the row for its address.
        rows = dict(psql(pg_database_url, "select ip, mac from lease"))
        assert all(rows.get(ip) == mac for mac, ip, _ in records)
        # A client bound by one instance keeps its address when the other one answers.
        sample = tmp_path / "sample.txt"
        picked = [(mac, ip, server) for mac, ip, server in records][:: max(1, len(records) // 40)]
        sample.write_text("".join(f"{mac} {ip}\n" for mac, ip, _ in picked))
        verdicts = {}
        for server_ip in ("10.77.0.1", "10.77.0.3"):
            res = in_ns(
                seg.ns("l"),
                "env",
                f"PYTHONPATH={REPO}",
                PYTHON,
                "-m",
                "tests.dhcp.relay_load",
                "reboot",
                "--server",
                server_ip,
                "--giaddr",
                "10.77.0.4",
                "--inp",
                str(sample),
                timeout=120,
            )
            verdicts[server_ip] = res.stdout.splitlines()
        for lines in verdicts.values():
            assert len(lines) == len(picked)
            for line in lines:
                mac, ip, verdict, *rest = line.split()
                assert verdict == "ACK" and rest == [ip], line
        ca, cb = stop_server(a), stop_server(b)
        assert ca["ack"] > 0 and cb["ack"] > 0
