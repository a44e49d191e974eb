"""Bring the lab up and down; report its status.

``up`` records every step in the state file (lab.state) before or right after taking
it; ``down`` works from that file alone, so it cleans up after a crash or ``kill -9`` of
``up`` as well as after a clean run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab import libvirt_backend, net, registry
from lab.errors import LabError
from lab.machines import lab_machines
from lab.state import LabState, ProcessRecord, process_start_time
from lab.vm import FIRMWARES, VmFiles

__all__ = ["BACKENDS", "LabError", "LabOptions", "VmStatus", "down", "status", "up"]

RA_PREFIX = "fd77::/64"
BMC_ADDRESS = "127.0.0.1"
_REPO_ROOT = Path(__file__).resolve().parent.parent
_READY_TIMEOUT_S = 15.0
BACKENDS = ("qemu", "libvirt")  # qemu: the lab's own BMCs; libvirt: libvirtd + virtualbmc


@dataclass(frozen=True)
class LabOptions:
    """What ``lab up`` builds."""

    state_dir: Path
    namespace: str = "pvlab"
    bridge: str = "labbr0"
    machines: int = 3
    firmware: str = "bios"
    memory_mib: int = 256
    owner_pid: int | None = None  # a lab whose owner dies is "stale" (registry.py)
    backend: str = "qemu"


@dataclass(frozen=True)
class VmStatus:
    """One VM as ``lab status`` shows it."""

    name: str
    power: str
    bmc: str
    serial_log: Path


def bmc_password(state_dir: Path) -> str:
    """Return LAB_BMC_PASSWORD, else the password in ``state_dir/bmc-password`` (made once)."""
    from_env = os.environ.get("LAB_BMC_PASSWORD")
    if from_env:
        return from_env
    path = state_dir / "bmc-password"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(12) + "\n", encoding="ascii")
    return path.read_text(encoding="ascii").strip()


def _spawn(state: LabState, role: str, argv: list[str], env: dict[str, str]) -> None:
    log = Path(state.state_dir) / f"{role}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            net.netns_argv(state.namespace, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=_REPO_ROOT,
        )
    state.add_process(role, process.pid)


def _wait_udp_bound(namespace: str, ports: list[int]) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    wanted = {f":{p}" for p in ports}
    while time.monotonic() < deadline:
        out = subprocess.run(
            net.netns_argv(namespace, ["ss", "-H", "-uln"]),
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        bound = {word[word.rfind(":") :] for line in out.splitlines() for word in line.split()}
        if wanted <= bound:
            return
        time.sleep(0.1)
    msg = f"BMCs did not start listening on {sorted(ports)} (see bmcd-*.log)"
    raise LabError(msg)


def up(options: LabOptions) -> LabState:
    """Create the namespace, bridge, taps, RA sender and BMCs; VMs start powered off."""
    if options.firmware not in FIRMWARES:
        msg = f"unknown firmware {options.firmware!r}"
        raise LabError(msg)
    if options.backend not in BACKENDS:
        msg = f"unknown backend {options.backend!r}"
        raise LabError(msg)
    lab_machines(options.machines)  # validates the count
    state_dir = options.state_dir.resolve()
    created = [d for d in (state_dir, *state_dir.parents) if not d.exists()]
    state_dir.mkdir(parents=True, exist_ok=True)
    if LabState.load(state_dir) is not None:
        msg = f"a lab is already recorded in {state_dir}: run `lab down` first"
        raise LabError(msg)
    if net.namespace_exists(options.namespace):
        msg = f"network namespace {options.namespace} already exists"
        raise LabError(msg)
    state = LabState(
        state_dir=str(state_dir),
        namespace=options.namespace,
        bridge=options.bridge,
        machines=options.machines,
        firmware=options.firmware,
        created_dirs=[str(d) for d in created],
        backend=options.backend,
    )
    state.namespace_created = True  # recorded before creation: down tolerates absence
    state.save()
    registry.record(options.namespace, state_dir, options.owner_pid)
    try:
        if options.backend == "libvirt":
            _build_libvirt(state, options)
        else:
            _build(state, options)
    except BaseException:
        down(state_dir)  # a failed `up` leaves nothing behind (a SIGKILL: run `lab down`)
        raise
    return state


def _build(state: LabState, options: LabOptions) -> None:
    machines = lab_machines(options.machines)
    state_dir = Path(state.state_dir)
    net.create_namespace(options.namespace)
    net.create_bridge(options.namespace, options.bridge)
    for machine in machines:
        state.taps.append(machine.tap)
        state.save()
        net.add_tap(options.namespace, options.bridge, machine.tap)
    env = {
        **os.environ,
        "PYTHONPATH": str(_REPO_ROOT),
        "LAB_BMC_PASSWORD": bmc_password(state_dir),
    }
    python = sys.executable
    _spawn(state, "ra", [python, "-m", "lab.ra_daemon", options.bridge, RA_PREFIX], env)
    for index, machine in enumerate(machines):
        bmcd = [
            python, "-m", "lab.bmcd",
            "--state-dir", str(state_dir),
            "--machines", str(options.machines),
            "--only", str(index),
            "--firmware", options.firmware,
            "--address", BMC_ADDRESS,
            "--memory", str(options.memory_mib),
        ]  # fmt: skip
        _spawn(state, f"bmcd-{machine.name}", bmcd, env)
    _wait_udp_bound(options.namespace, [m.bmc_port for m in machines])


def _build_libvirt(state: LabState, options: LabOptions) -> None:
    """The same network and RA sender as `_build`; libvirtd + virtualbmc instead of bmcd."""
    state_dir = Path(state.state_dir)
    net.create_namespace(options.namespace)
    net.create_bridge(options.namespace, options.bridge)
    password = bmc_password(state_dir)
    env = {**os.environ, "PYTHONPATH": str(_REPO_ROOT), "LAB_BMC_PASSWORD": password}
    _spawn(state, "ra", [sys.executable, "-m", "lab.ra_daemon", options.bridge, RA_PREFIX], env)
    libvirt_backend.start(
        state,
        memory_mib=options.memory_mib,
        password=password,
        env=env,
        spawn=_spawn,
        wait_udp=_wait_udp_bound,
    )


def _stop(pid: int, start: str | None) -> None:
    """SIGTERM, then SIGKILL, the process ``pid`` if it still is the one we started."""
    if start is None or process_start_time(pid) != start:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and process_start_time(pid) == start:
        time.sleep(0.05)
    if process_start_time(pid) == start:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _namespace_pids(namespace: str) -> list[int]:
    if not net.namespace_exists(namespace):
        return []
    out = subprocess.run(
        ["ip", "netns", "pids", namespace],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [int(word) for word in out.split() if word.isdigit()]


def _stop_everything(state: LabState) -> None:
    """Stop the recorded processes, the QEMUs by pid file, then the rest of our namespace."""
    for record in sorted(state.processes, key=lambda r: not r.role.startswith("bmcd")):
        _stop(record.pid, record.start)  # BMCs first: they could start VMs again
    for pid_file in Path(state.state_dir).glob("*.pid"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text(encoding="ascii").strip())
            _stop(pid, process_start_time(pid))
    for pid in _namespace_pids(state.namespace):
        _stop(pid, process_start_time(pid))


def lab_files(state: LabState) -> list[Path]:
    """Every file a lab of this shape creates in its state directory."""
    state_dir = Path(state.state_dir)
    files = [state_dir / name for name in ("bmc-password", "ra.log", "bmcd.log")]
    if state.backend == "libvirt":
        files += libvirt_backend.lab_files(state_dir)
    for machine in lab_machines(state.machines):
        files.append(state_dir / f"bmcd-{machine.name}.log")
        vm = VmFiles.under(state_dir, machine.name)
        files += [vm.serial_log, vm.qmp_socket, vm.pid_file, vm.ovmf_vars, vm.disk]
        files.append(state_dir / f"{machine.name}.qemu.log")
    return files


def down(state_dir: Path, *, keep_logs: bool = False) -> bool:
    """Undo everything recorded in ``state_dir``; return False if nothing was recorded."""
    state = LabState.load(state_dir.resolve())
    if state is None:
        return False
    if state.backend == "libvirt":
        libvirt_backend.stop_domains(state)
    _stop_everything(state)
    if state.backend == "libvirt":
        libvirt_backend.remove_files(state)
    for tap in state.taps:
        net.delete_link(state.namespace, tap)
    net.delete_link(state.namespace, state.bridge)
    if state.namespace_created:
        net.delete_namespace(state.namespace)
    for path in lab_files(state):
        if not (keep_logs and path.name.endswith(".log")):
            path.unlink(missing_ok=True)
    state.remove()
    registry.forget(state.namespace)
    for directory in state.created_dirs or [state.state_dir]:
        with contextlib.suppress(OSError):
            Path(directory).rmdir()  # only when empty (kept logs, or files not ours)
    return True


def down_registered(*, stale_only: bool) -> list[str]:
    """Take down every registered lab (or only those whose owner died); return namespaces."""
    done = []
    for entry in registry.entries():
        if stale_only and not entry.owner_gone():
            continue
        if not down(Path(entry.state_dir)):
            # The state directory is gone (a removed tmp dir): the namespace may remain.
            for pid in _namespace_pids(entry.namespace):
                _stop(pid, process_start_time(pid))
            net.delete_namespace(entry.namespace)
            registry.forget(entry.namespace)
        done.append(entry.namespace)
    return done


def status(state_dir: Path) -> tuple[LabState, list[VmStatus]] | None:
    """Return the recorded lab and its VMs, or None if no lab is recorded."""
    state_dir = state_dir.resolve()
    state = LabState.load(state_dir)
    if state is None:
        return None
    vms = []
    for machine in lab_machines(state.machines):
        files = VmFiles.under(state_dir, machine.name)
        power = "off"
        if state.backend == "libvirt":
            power = libvirt_backend.power_state(state, machine.name)
        with contextlib.suppress(OSError, ValueError):
            pid = int(files.pid_file.read_text(encoding="ascii").strip())
            if process_start_time(pid) is not None:
                power = "on"
        bmc = f"{BMC_ADDRESS}:{machine.bmc_port}"
        vms.append(VmStatus(machine.name, power, bmc, files.serial_log))
    return state, vms


def alive(record: ProcessRecord) -> bool:
    """Tell whether a recorded process still runs."""
    return record.alive()
