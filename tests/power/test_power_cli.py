"""`provisioner power status` against real BMCs, through the real daemon and its API.

Issue 11 item 5: a wrong password and a silent BMC both used to print
`502 Bad Gateway: BMC call failed: PowerFailedError`. The operator must read which it is,
the BMC's address and the inventory fields to check, never the password; `--json` and
the API carry the machine-readable `reason`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from power_fixtures import SENTINEL, Daemon, IpmiSim, Sushy, daemon_config, free_tcp_port, start_daemon, stop

WRONG = "Wr0ng-pw-5e1d"  # the wrong password in the inventory: must never be shown either


@pytest.fixture
def silent_udp() -> Iterator[int]:
    """A UDP port that takes datagrams and never answers: a BMC that is down or filtered."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _machine(name: str, bmc: str) -> str:
    return f"kind: Machine\nname: {name}\nmacs: [52:54:00:11:00:{len(name):02x}]\nbmc: {bmc}\n"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    config, port = daemon_config(tmp_path, power_timeout_s=8.0)
    proc = start_daemon(config, port)
    try:
        yield proc
    finally:
        stop(proc.proc)


def _apply(daemon: Daemon, tmp_path: Path, *docs: str) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text("---\n".join(docs))
    done = daemon.cli("inventory", "apply", str(inv))
    assert done.returncode == 0, done.stderr


def _status(daemon: Daemon, name: str) -> tuple[str, dict[str, object]]:
    """`power status NAME` (human) and `power status --json NAME`; both must fail (exit 1)."""
    human = daemon.cli("power", "status", name)
    assert human.returncode == 1, (human.stdout, human.stderr)
    machine = daemon.cli("power", "status", "--json", name)
    assert machine.returncode == 1, (machine.stdout, machine.stderr)
    for text in (human.stdout, human.stderr, machine.stdout, machine.stderr):
        assert WRONG not in text
        assert SENTINEL not in text
    errors = [line for line in human.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, human.stderr
    (result,) = json.loads(machine.stdout)
    return errors[0], result


def test_ipmi_wrong_password_says_credentials_refused(
    daemon: Daemon, ipmi_sim: IpmiSim, tmp_path: Path
) -> None:
    bmc = f"{{driver: ipmi, address: 127.0.0.1, port: {ipmi_sim.port}, username: admin, password: {WRONG}}}"
    _apply(daemon, tmp_path, _machine("ipmi-badpw", bmc))
    line, result = _status(daemon, "ipmi-badpw")
    assert line.startswith("error: ipmi-badpw: power status: the BMC refused the credentials: ")
    assert f"ipmi 127.0.0.1:{ipmi_sim.port}" in line
    assert "password rejected" in line
    assert "check bmc.username, bmc.password of machine ipmi-badpw in the inventory" in line
    assert line.endswith("[bmc-auth-refused]")
    assert result["reason"] == "bmc-auth-refused"
    assert result["status"] == 502
    # The BMC's real password still works: the refusal was about the credentials only.
    assert ipmi_sim.password != WRONG


def test_ipmi_silent_bmc_says_no_answer_within(daemon: Daemon, silent_udp: int, tmp_path: Path) -> None:
    bmc = f"{{driver: ipmi, address: 127.0.0.1, port: {silent_udp}, username: admin, password: {WRONG}}}"
    _apply(daemon, tmp_path, _machine("ipmi-silent", bmc))
    line, result = _status(daemon, "ipmi-silent")
    assert line.startswith("error: ipmi-silent: power status: the BMC did not answer: ")
    assert f"ipmi 127.0.0.1:{silent_udp}: no answer to IPMI session setup within " in line
    assert "check bmc.address, bmc.port of machine ipmi-silent in the inventory" in line
    assert line.endswith("[bmc-unreachable]")
    assert result["reason"] == "bmc-unreachable"
    assert result["status"] == 502


def _redfish(port: int, system: str, password: str) -> str:
    return (
        f"{{driver: redfish, address: 127.0.0.1, port: {port}, username: admin, password: {password}, "
        f"options: {{scheme: http, system: {system}}}}}"
    )


def test_redfish_wrong_password_says_credentials_refused(
    daemon: Daemon, sushy: Sushy, tmp_path: Path
) -> None:
    _apply(daemon, tmp_path, _machine("rf-badpw", _redfish(sushy.port, sushy.off_system, WRONG)))
    line, result = _status(daemon, "rf-badpw")
    assert line.startswith("error: rf-badpw: power status: the BMC refused the credentials: ")
    assert f"redfish 127.0.0.1:{sushy.port}: Redfish refused the credentials (HTTP 401/403)" in line
    assert "check bmc.username, bmc.password of machine rf-badpw in the inventory" in line
    assert line.endswith("[bmc-auth-refused]")
    assert result["reason"] == "bmc-auth-refused"
    assert result["status"] == 502


def test_redfish_right_password_still_answers(daemon: Daemon, sushy: Sushy, tmp_path: Path) -> None:
    """The control: the same emulator and daemon with the right password give a state."""
    _apply(daemon, tmp_path, _machine("rf-good", _redfish(sushy.port, sushy.off_system, sushy.password)))
    done = daemon.cli("power", "status", "--json", "rf-good")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["result"]["state"] == "off"


def test_redfish_unreachable_says_connection_refused(daemon: Daemon, tmp_path: Path) -> None:
    port = free_tcp_port()  # nothing listens there
    _apply(daemon, tmp_path, _machine("rf-down", _redfish(port, "x", WRONG)))
    line, result = _status(daemon, "rf-down")
    assert line.startswith("error: rf-down: power status: the BMC did not answer: ")
    assert f"redfish 127.0.0.1:{port}: cannot connect to the Redfish service (connection refused" in line
    assert "check bmc.address, bmc.port, bmc.options.scheme of machine rf-down in the inventory" in line
    assert line.endswith("[bmc-unreachable]")
    assert result["reason"] == "bmc-unreachable"
    assert result["status"] == 502
