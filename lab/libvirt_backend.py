"""The libvirt backend: libvirtd and virtualbmc inside the lab namespace (the recipe in docs/testing.md).

``lab up --backend libvirt`` builds the same network as the QEMU backend (namespace,
bridge, RA sender) and then, instead of the lab's own BMC processes:

- **libvirtd**, started by hand (no systemd) inside the lab namespace and a private mount
  namespace (``unshare --mount --propagation private``) whose ``/run``, ``/etc/libvirt``
  and ``/var/{lib,log,cache}/libvirt`` are bind mounts of ``<state>/libvirt/*``; clients
  reach it on ``<state>/libvirt/run/libvirt/libvirt-sock``. qemu.conf: user/group root,
  no dynamic ownership, no security driver, no cgroups, no namespaces.
- one **domain** per machine, from ``templates/lab/domain.xml.j2`` (TCG, BIOS, network
  boot, a bridge interface whose tap has the machine's name, serial to
  ``<state>/<vm>.serial.log``), defined and shut off;
- **vbmcd** (virtualbmc) with its config under ``<state>/vbmc``: one IPMI endpoint per
  domain on 127.0.0.1:6230+i inside the namespace, user ``admin``, the lab's BMC
  password; each BMC runs in its own process (vbmcd forks them).

virtualbmc comes from PyPI and needs libvirt's Python binding: it runs from a helper
virtualenv (default ``var/vbmc-venv``, env ``LAB_VBMC_VENV``) made at the first ``up``
with Debian's ``/usr/bin/python3 -m venv --system-site-packages`` (so ``python3-libvirt``
from apt is used, nothing is compiled) and ``pip install virtualbmc``. The venv is a
cache shared by every lab; ``lab down`` does not remove it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from lab.errors import LabError
from lab.machines import Machine, lab_machines

if TYPE_CHECKING:
    from collections.abc import Callable

    from lab.state import LabState

__all__ = [
    "VBMC_REQUIREMENT",
    "domain_xml",
    "lab_files",
    "libvirt_uri",
    "power_state",
    "remove_files",
    "start",
    "stop_domains",
    "virsh",
]

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates" / "lab"
VBMC_REQUIREMENT = "virtualbmc>=3.1,<4"
SYSTEM_PYTHON = "/usr/bin/python3"
EMULATOR = "/usr/bin/qemu-system-x86_64"
BMC_ADDRESS = "127.0.0.1"
VBMC_SERVER_PORT = 50891  # vbmcd's control port (ZeroMQ), inside the lab namespace
_READY_TIMEOUT_S = 30.0
_SOCKET_PATH_MAX = 107  # sun_path

# Host directory -> the subdirectory of <state>/libvirt bind-mounted over it for libvirtd.
MOUNTS = {
    "/run": "run",
    "/etc/libvirt": "etc",
    "/var/lib/libvirt": "lib",
    "/var/log/libvirt": "log",
    "/var/cache/libvirt": "cache",
}

QEMU_CONF = """\
# Written by the lab (lab/libvirt_backend.py): root, no systemd, TCG.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""

LIBVIRTD_CONF = """\
# Written by the lab (lab/libvirt_backend.py): only root on the unix socket, no polkit.
unix_sock_rw_perms = "0700"
unix_sock_ro_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
"""

# Runs as: ip netns exec NS unshare --mount --propagation private sh -c SCRIPT sh LIBVIRT_DIR
_LIBVIRTD_SCRIPT = """\
set -e
d="$1"
mount --bind "$d/etc" /etc/libvirt
mount --bind "$d/lib" /var/lib/libvirt
mount --bind "$d/log" /var/log/libvirt
mount --bind "$d/cache" /var/cache/libvirt
mount --bind "$d/run" /run
exec libvirtd
"""


def libvirt_dir(state_dir: Path) -> Path:
    """Where libvirtd's private /run, /etc/libvirt, /var/... live."""
    return state_dir / "libvirt"


def vbmc_dir(state_dir: Path) -> Path:
    """The configuration directory of virtualbmc."""
    return state_dir / "vbmc"


def libvirt_socket(state_dir: Path) -> Path:
    """The read-write socket of libvirtd as seen from outside its mount namespace."""
    return libvirt_dir(state_dir) / "run" / "libvirt" / "libvirt-sock"


def libvirt_uri(state_dir: Path) -> str:
    """The connection URI for virsh and virtualbmc."""
    return f"qemu+unix:///system?socket={libvirt_socket(state_dir)}"


def vbmc_venv() -> Path:
    """The helper virtualenv virtualbmc runs from."""
    return Path(os.environ.get("LAB_VBMC_VENV", str(REPO / "var" / "vbmc-venv")))


def domain_xml(machine: Machine, *, bridge: str, serial_log: Path, memory_mib: int) -> str:
    """Render ``templates/lab/domain.xml.j2`` for ``machine``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("domain.xml.j2").render(
        machine=machine,
        bridge=bridge,
        serial_log=str(serial_log),
        memory_mib=memory_mib,
        emulator=EMULATOR,
    )


def virsh(state_dir: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``virsh`` against the lab's libvirtd (no error raised; check ``returncode``)."""
    return subprocess.run(
        ["virsh", "-q", "-c", libvirt_uri(state_dir), *args],
        capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _check_tools() -> None:
    missing = [tool for tool in ("libvirtd", "virsh", "unshare") if shutil.which(tool) is None]
    if missing:
        msg = (
            f"the libvirt backend needs {', '.join(missing)}: apt-get install libvirt-daemon-system "
            "libvirt-clients libvirt-daemon-driver-qemu python3-libvirt"
        )
        raise LabError(msg)
    for target in MOUNTS:
        if not Path(target).is_dir():
            msg = f"{target} is missing (is libvirt-daemon-system installed?)"
            raise LabError(msg)


def ensure_vbmc_venv() -> Path:
    """Return the helper venv's ``vbmcd``, creating the venv the first time (under a lock)."""
    venv = vbmc_venv()
    vbmcd = venv / "bin" / "vbmcd"
    if vbmcd.exists():
        return vbmcd
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import libvirt"], capture_output=True, check=False)
    if probe.returncode != 0:
        msg = f"{SYSTEM_PYTHON} cannot import libvirt: apt-get install python3-libvirt python3-venv"
        raise LabError(msg)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if vbmcd.exists():
            return vbmcd
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one
        steps = [
            [SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", VBMC_REQUIREMENT],
        ]
        for argv in steps:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                msg = f"making the virtualbmc venv failed: {' '.join(argv)}: {proc.stderr.strip()[-800:]}"
                raise LabError(msg)
    return vbmcd


def _write_libvirt_config(state_dir: Path) -> None:
    base = libvirt_dir(state_dir)
    for sub in MOUNTS.values():
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "etc" / "qemu.conf").write_text(QEMU_CONF, encoding="utf-8")
    (base / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF, encoding="utf-8")


def _write_vbmc_config(state_dir: Path, machines: list[Machine], password: str) -> Path:
    base = vbmc_dir(state_dir)
    domains = base / "domains"
    domains.mkdir(parents=True, exist_ok=True)
    base.chmod(0o700)  # the BMC configs hold the password
    conf = base / "virtualbmc.conf"
    conf.write_text(
        f"[default]\nconfig_dir = {domains}\npid_file = {base / 'master.pid'}\n"
        f"server_port = {VBMC_SERVER_PORT}\n\n[log]\ndebug = false\n",
        encoding="utf-8",
    )
    uri = libvirt_uri(state_dir)
    for machine in machines:
        (domains / machine.name).mkdir(exist_ok=True)
        (domains / machine.name / "config").write_text(
            "[VirtualBMC]\n"
            f"username = admin\npassword = {password}\naddress = {BMC_ADDRESS}\n"
            f"port = {machine.bmc_port}\ndomain_name = {machine.name}\n"
            f"libvirt_uri = {uri}\nactive = True\n",
            encoding="utf-8",
        )
    return conf


def _wait_libvirtd(state: LabState) -> None:
    state_dir = Path(state.state_dir)
    deadline = time.monotonic() + _READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if not any(r.alive() for r in state.processes if r.role == "libvirtd"):
            msg = "libvirtd exited at start (see libvirtd.log)"
            raise LabError(msg)
        if libvirt_socket(state_dir).exists():
            proc = virsh(state_dir, "version", timeout=10)
            if proc.returncode == 0:
                return
            last = proc.stderr.strip()
        time.sleep(0.2)
    msg = f"libvirtd did not answer within {_READY_TIMEOUT_S:.0f} s: {last} (see libvirtd.log)"
    raise LabError(msg)


def start(
    state: LabState,
    *,
    memory_mib: int,
    password: str,
    env: dict[str, str],
    spawn: Callable[[LabState, str, list[str], dict[str, str]], None],
    wait_udp: Callable[[str, list[int]], None],
) -> None:
    """Start libvirtd, define the domains (shut off), start vbmcd; record each step."""
    state_dir = Path(state.state_dir)
    if state.firmware != "bios":
        msg = "the libvirt backend boots BIOS firmware only (use --backend qemu for uefi/uefi-pxe)"
        raise LabError(msg)
    if len(str(libvirt_socket(state_dir))) > _SOCKET_PATH_MAX:
        msg = f"state directory path too long for libvirtd's socket: {state_dir}"
        raise LabError(msg)
    _check_tools()
    vbmcd = ensure_vbmc_venv()
    machines = lab_machines(state.machines)
    for machine in machines:  # libvirt creates the taps; recorded so `down` removes them
        state.taps.append(machine.tap)
    state.save()
    _write_libvirt_config(state_dir)
    script = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _LIBVIRTD_SCRIPT, "sh"]
    spawn(state, "libvirtd", [*script, str(libvirt_dir(state_dir))], env)
    _wait_libvirtd(state)
    for machine in machines:
        xml = libvirt_dir(state_dir) / f"{machine.name}.xml"
        serial_log = state_dir / f"{machine.name}.serial.log"
        xml.write_text(
            domain_xml(machine, bridge=state.bridge, serial_log=serial_log, memory_mib=memory_mib),
            encoding="utf-8",
        )
        proc = virsh(state_dir, "define", str(xml))
        if proc.returncode != 0:
            msg = f"virsh define {machine.name}: {proc.stderr.strip()}"
            raise LabError(msg)
    conf = _write_vbmc_config(state_dir, machines, password)
    vbmc_env = {**env, "VIRTUALBMC_CONFIG": str(conf)}
    vbmc_env.pop("LAB_BMC_PASSWORD", None)  # it is in the 0700 config directory
    vbmc_env.pop("PYTHONPATH", None)
    spawn(state, "bmcd-vbmcd", [str(vbmcd), "--foreground"], vbmc_env)
    wait_udp(state.namespace, [m.bmc_port for m in machines])


def _libvirtd_alive(state: LabState) -> bool:
    return any(r.alive() for r in state.processes if r.role == "libvirtd")


def power_state(state: LabState, name: str) -> str:
    """``on``/``off`` as libvirt reports the domain, ``unknown`` without libvirtd."""
    if not _libvirtd_alive(state):
        return "unknown"
    proc = virsh(Path(state.state_dir), "domstate", name, timeout=10)
    if proc.returncode != 0:
        return "unknown"
    return "on" if proc.stdout.strip() == "running" else "off"


def stop_domains(state: LabState) -> None:
    """Stop every lab domain through libvirtd (if it still runs) and keep QEMU's logs.

    ``lab down`` then stops the processes; any QEMU left (libvirtd killed) lives in the
    lab namespace and goes with the namespace sweep.
    """
    state_dir = Path(state.state_dir)
    if _libvirtd_alive(state):
        for machine in lab_machines(state.machines):
            with contextlib.suppress(subprocess.TimeoutExpired):
                virsh(state_dir, "destroy", machine.name, timeout=15)
    for machine in lab_machines(state.machines):
        qemu_log = libvirt_dir(state_dir) / "log" / "qemu" / f"{machine.name}.log"
        with contextlib.suppress(OSError):
            shutil.copyfile(qemu_log, state_dir / f"{machine.name}.qemu.log")


def remove_files(state: LabState) -> None:
    """Remove libvirtd's and virtualbmc's directories (after every process of ours stopped).

    The bind mounts existed only in libvirtd's private mount namespace, gone with it.
    """
    state_dir = Path(state.state_dir)
    for directory in (libvirt_dir(state_dir), vbmc_dir(state_dir)):
        shutil.rmtree(directory, ignore_errors=True)


def lab_files(state_dir: Path) -> list[Path]:
    """The plain files the libvirt backend adds to the state directory."""
    return [state_dir / "libvirtd.log", state_dir / "bmcd-vbmcd.log"]
