"""Real BMCs for the power tests, each started on 127.0.0.1 and stopped by PID.

* `ipmi_sim`: OpenIPMI's simulator with a chassis-control script that records what the
  BMC was told (docs/testing.md "OpenIPMI ipmi_sim as a BMC").
* `pyghmi_bmc` / `make_pyghmi_bmc`: a `pyghmi.ipmi.bmc.Bmc` subclass in a subprocess
  (tests/power/pyghmi_test_bmc.py), the kind of BMC virtualbmc and the lab use.
* `sushy`: sushy-tools' Redfish emulator with its fake driver and HTTP Basic auth.
* `ipmitool`: the reference client, password passed through the environment (-E).

Passwords are sentinels so the leak tests can grep for them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from power_fixtures import (
    CHASSIS_SCRIPT,
    HERE,
    SENTINEL,
    SIM_PASSWORD,
    IpmiSim,
    PyghmiBmc,
    Sushy,
    free_tcp_port,
    free_udp_port,
    stop,
)

IPMITOOL_BASE = ("ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1")
BMC_SCRIPT = (sys.executable, str(HERE / "pyghmi_test_bmc.py"))


@pytest.fixture
def ipmi_sim(tmp_path: Path) -> Iterator[IpmiSim]:
    """OpenIPMI ipmi_sim on a free UDP port with a recording chassis-control script."""
    port = free_udp_port()
    state = tmp_path / "simstate"
    state.mkdir()  # ipmi_sim silently does nothing without its state directory
    script = tmp_path / "chassis.sh"
    script.write_text(CHASSIS_SCRIPT)
    script.chmod(0o700)
    lan = tmp_path / "lan.conf"
    lan.write_text(
        f"""name "pvsim"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{script} 0x20"
  user 2 true "admin" "{SIM_PASSWORD}" admin 10 none md2 md5 straight
"""
    )
    lan.chmod(0o600)
    emu = tmp_path / "sim.emu"
    emu.write_text(
        "mc_setbmc 0x20\n"
        "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
        "mc_enable 0x20\n"
    )
    proc = subprocess.Popen(
        ["ipmi_sim", "-c", str(lan), "-f", str(emu), "-s", str(state), "-n"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sim = IpmiSim(port, SIM_PASSWORD, tmp_path / "chassis.calls")
        deadline = time.monotonic() + 10
        while True:  # ready when ipmitool gets an answer
            env = {**os.environ, "IPMI_PASSWORD": SIM_PASSWORD}
            probe = subprocess.run(
                [*IPMITOOL_BASE, "-p", str(port), "-U", "admin", "-E", "-R", "1", "-N", "1", "mc", "info"],
                env=env,
                capture_output=True,
                timeout=10,
                check=False,
            )
            if probe.returncode == 0:
                break
            assert proc.poll() is None, "ipmi_sim exited"
            assert time.monotonic() < deadline, "ipmi_sim did not answer"
            time.sleep(0.1)
        yield sim
    finally:
        stop(proc)


@pytest.fixture
def make_pyghmi_bmc(tmp_path: Path) -> Iterator[Callable[..., PyghmiBmc]]:
    """Factory: start pyghmi_test_bmc.py with extra flags; all stopped at teardown."""
    started: list[subprocess.Popen[str]] = []

    def make(*flags: str) -> PyghmiBmc:
        port = free_udp_port()
        base = tmp_path / f"bmc-{port}"
        base.mkdir()
        log, hang = base / "calls.jsonl", base / "hang"
        proc = subprocess.Popen(
            [*BMC_SCRIPT, "--port", str(port), "--log", str(log), "--hang", str(hang), *flags],
            env={**os.environ, "BMC_PASSWORD": SENTINEL},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return PyghmiBmc(port, SENTINEL, log, hang, proc)

    try:
        yield make
    finally:
        for proc in started:
            stop(proc)


@pytest.fixture
def pyghmi_bmc(make_pyghmi_bmc: Callable[..., PyghmiBmc]) -> PyghmiBmc:
    """One well-behaved pyghmi BMC."""
    return make_pyghmi_bmc()


@pytest.fixture(scope="module")
def sushy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sushy]:
    """sushy-tools' emulator, fake driver, two systems, Basic auth (bcrypt htpasswd)."""
    base = tmp_path_factory.mktemp("sushy")
    port = free_tcp_port()
    auth = base / "htpasswd"
    digest = bcrypt.hashpw(SENTINEL.encode(), bcrypt.gensalt(rounds=4)).decode()
    auth.write_text(f"admin:{digest}\n")
    off_uuid, on_uuid = "7c5a1c52-0000-4000-8000-000000000001", "7c5a1c52-0000-4000-8000-000000000002"
    conf = base / "emulator.conf"
    conf.write_text(
        f"""SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
SUSHY_EMULATOR_LISTEN_PORT = {port}
SUSHY_EMULATOR_AUTH_FILE = {str(auth)!r}
SUSHY_EMULATOR_STATE_DIR = {str(base / "state")!r}
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_FAKE_SYSTEMS = [
    {{'uuid': {off_uuid!r}, 'name': 'node-off', 'power_state': 'Off',
      'nics': [{{'mac': '52:54:00:00:00:01', 'ip': '127.0.0.1'}}]}},
    {{'uuid': {on_uuid!r}, 'name': 'node-on', 'power_state': 'On',
      'nics': [{{'mac': '52:54:00:00:00:02', 'ip': '127.0.0.1'}}]}},
]
"""
    )
    emulator = Path(sys.executable).with_name("sushy-emulator")
    proc = subprocess.Popen(
        [str(emulator), "--config", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert proc.poll() is None, "sushy-emulator exited"
                assert time.monotonic() < deadline, "sushy-emulator did not start"
                time.sleep(0.1)
        yield Sushy(port, SENTINEL, off_uuid, on_uuid)
    finally:
        stop(proc)
