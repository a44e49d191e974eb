"""The lab network and its life cycle: everything ``up`` makes, ``down`` removes, even after
``lab up`` itself is killed with SIGKILL."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from lab_support import REPO, Lab, lab_options

from lab import control, net
from lab.state import LabState, process_start_time

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.lab


def links(namespace: str) -> set[str]:
    """Link names inside ``namespace``."""
    out = subprocess.run(["ip", "-n", namespace, "-j", "link", "show"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return {link["ifname"] for link in json.loads(out)}


def assert_all_gone(state_dir: Path, namespace: str, pids: list[int]) -> None:
    """No namespace, no recorded process, no state directory is left."""
    assert not net.namespace_exists(namespace)
    assert namespace not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                           text=True, check=True).stdout  # fmt: skip
    for pid in pids:
        assert process_start_time(pid) is None, f"pid {pid} survived"
    assert not state_dir.exists()


def test_up_creates_and_down_removes(lab: Lab) -> None:
    """Bridge with both addresses, one tap per VM, lo up, RA and BMC processes running."""
    namespace = lab.namespace
    assert links(namespace) == {"lo", "labbr0", "labtap0", "labtap1"}
    addrs = lab.netns("ip", "-j", "addr", "show", "dev", "labbr0").stdout
    local = {a["local"] for link in json.loads(addrs) for a in link["addr_info"]}
    assert {"10.77.0.1", "fd77::1"} <= local
    masters = json.loads(lab.netns("ip", "-j", "link", "show", "master", "labbr0").stdout)
    assert {link["ifname"] for link in masters} == {"labtap0", "labtap1"}
    lo = json.loads(lab.netns("ip", "-j", "link", "show", "dev", "lo").stdout)
    assert "UP" in lo[0]["flags"]
    state = LabState.load(lab.options.state_dir)
    assert state is not None
    assert {p.role for p in state.processes} == {"ra", "bmcd-lab-cp1", "bmcd-lab-w1"}
    assert all(p.alive() for p in state.processes)
    pids = [p.pid for p in state.processes]
    status = subprocess.run(
        [sys.executable, "-m", "lab", "--state-dir", str(lab.options.state_dir), "status"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    assert f"namespace {namespace}" in status
    assert "lab-w1     off   127.0.0.1:6231" in status
    assert str(lab.options.state_dir / "lab-cp1.serial.log") in status
    assert control.down(lab.options.state_dir)
    assert_all_gone(lab.options.state_dir, namespace, pids)


def test_router_advertisement_on_the_bridge(lab: Lab) -> None:
    """A port on the bridge receives RAs for fd77::/64 (so iPXE need not wait for one)."""
    lab.netns("ip", "link", "add", "pvra0", "type", "veth", "peer", "name", "pvra1")
    lab.netns("ip", "link", "set", "pvra0", "master", "labbr0", "up")
    lab.netns("ip", "link", "set", "pvra1", "up")
    code = (
        "from scapy.all import sniff\n"
        "from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6NDOptPrefixInfo\n"
        "p = sniff(iface='pvra1', timeout=10, count=1, lfilter=lambda p: ICMPv6ND_RA in p)\n"
        "ra = p[0]\n"
        "print(ra[ICMPv6NDOptPrefixInfo].prefix, ra[ICMPv6NDOptPrefixInfo].prefixlen, ra.hlim)\n"
    )
    proc = lab.netns(sys.executable, "-c", code, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fd77::", "64", "255"]


def test_down_after_sigkill_of_up(tmp_path: Path) -> None:
    """kill -9 of a running ``lab up --foreground``, a VM on: ``lab down`` leaves nothing."""
    options = lab_options(tmp_path / "state")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAB_BMC_PASSWORD": "crash-test"}
    argv = [sys.executable, "-m", "lab", "--state-dir", str(options.state_dir), "up",
            "--machines", "2", "--namespace", options.namespace, "--foreground"]  # fmt: skip
    up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 30
        for line in up.stdout:
            if b"lab up: running" in line or time.monotonic() > deadline:
                break
        lab = Lab(options, "crash-test")
        lab.ipmitool(6230, "power", "on")
        up.send_signal(signal.SIGKILL)
        up.wait(5)
        state = LabState.load(options.state_dir)
        assert state is not None
        pid_file = options.state_dir / "lab-cp1.pid"
        deadline = time.monotonic() + 10  # power on returns at once; QEMU writes it soon after
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        qemu = int(pid_file.read_text(encoding="ascii"))
        pids = [p.pid for p in state.processes] + [qemu]
        assert all(process_start_time(pid) is not None for pid in pids)  # orphans, still up
        assert net.namespace_exists(options.namespace)
        down = subprocess.run([sys.executable, "-m", "lab", "--state-dir", str(options.state_dir),
                               "down"], env=env, cwd=REPO, check=False, timeout=60)  # fmt: skip
        assert down.returncode == 0
        assert_all_gone(options.state_dir, options.namespace, pids)
    finally:
        if up.poll() is None:
            up.kill()
        control.down(options.state_dir)


def test_down_without_a_lab_is_a_no_op(tmp_path: Path) -> None:
    """Nothing recorded: down reports so and succeeds."""
    assert control.down(tmp_path / "nothing") is False


def test_failed_up_cleans_up_after_itself(tmp_path: Path) -> None:
    """A failure half-way (an invalid bridge name, after the namespace exists) leaves nothing."""
    options = dataclasses.replace(lab_options(tmp_path / "state"), bridge="x" * 20)
    with pytest.raises(net.NetnsError):
        control.up(options)
    assert not net.namespace_exists(options.namespace)
    assert not options.state_dir.exists()


KILLED_RUN = """
import os, sys, time
from pathlib import Path
from lab import control
options = control.LabOptions(state_dir=Path(sys.argv[1]), namespace=sys.argv[2], machines=1,
                             owner_pid=os.getpid())
control.up(options)
print("up", flush=True)
time.sleep(600)
"""


def test_down_stale_after_sigkill_of_a_test_run(tmp_path: Path) -> None:
    """A test run killed with its lab up: `lab down --stale` finds the lab by its dead owner."""
    options = lab_options(tmp_path / "state")
    env = {**os.environ, "PYTHONPATH": str(REPO), "LAB_BMC_PASSWORD": "stale-test"}
    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(options.state_dir), options.namespace],
        stdout=subprocess.PIPE, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert run.stdout is not None
        assert run.stdout.readline().strip() == b"up"
        state = LabState.load(options.state_dir)
        assert state is not None
        pids = [p.pid for p in state.processes]
        live = control.down_registered(stale_only=True)
        assert options.namespace not in live  # its owner still runs: not stale
        run.send_signal(signal.SIGKILL)
        run.wait(5)
        down = subprocess.run(
            [sys.executable, "-m", "lab", "down", "--stale"],
            capture_output=True, text=True, env=env, cwd=REPO, check=True, timeout=60,
        )  # fmt: skip
        assert f"took down {options.namespace}" in down.stdout
        assert_all_gone(options.state_dir, options.namespace, pids)
    finally:
        if run.poll() is None:
            run.kill()
        control.down(options.state_dir)
