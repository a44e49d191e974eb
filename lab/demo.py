"""``python -m lab demo``: the whole flow on one machine (what ``make demo`` runs).

Steps: bring the lab up (3 VMs, virtual BMCs), build the lab node's kernel + initramfs,
write the daemon's settings for the lab network, apply ``inventory/lab.yaml``, import the
boot assets, create the cluster's secrets, start ``provisioner serve`` inside the lab
namespace, then ``provisioner provision --all --wait`` with its live table, then a table of
each machine's attempts and its agent's console markers (failures included). Exit status
0 only if every lab machine reached Provisioned on its first attempt. The lab and the daemon stay up for
exploring; ``python -m lab down`` (``make demo-down``) removes everything, and Ctrl-C
during the run does too.

`LabStack` is also what the end-to-end tests use, so the demo and the tests exercise the
same wiring.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import control
from lab.machines import lab_machines
from lab.markers import read_agent_report
from lab.report import MachineOutcome, first_attempt_problems, outcome_table
from lab.state import LabState
from lab.vm import VmFiles

__all__ = ["LabStack", "demo_main", "write_settings"]

REPO = Path(__file__).resolve().parents[1]
BRIDGE_IP = "10.77.0.1"
HTTP_PORT = 8080
API_PORT = 8081  # the operators' API, on the lab namespace's own loopback
TRUSTD_PORT = 50001
LAB_CLUSTER = "lab"
DEFAULT_INVENTORY = REPO / "inventory" / "lab.yaml"


def write_settings(path: Path, state_dir: Path, *, dhcp_mode: str = "full", bridge: str = "labbr0") -> Path:
    """The daemon's settings for the lab network (short stage timeouts: TCG boots in ~30 s)."""
    text = f"""# Written by `python -m lab demo`: the daemon inside the lab namespace.
state_dir = "{state_dir}"
log_format = "json"

[dhcp]
mode = "{dhcp_mode}"
interfaces = ["{bridge}"]
server_address = "{BRIDGE_IP}"
unknown_machines = "record"

[[dhcp.subnet]]
cidr = "10.77.0.0/24"
pool = "10.77.0.100-10.77.0.199"
gateway = "{BRIDGE_IP}"
dns = ["{BRIDGE_IP}"]
lease_time = 3600

[tftp]
port = 69

[http]
listen = "{BRIDGE_IP}:{HTTP_PORT}"
public_url = "http://{BRIDGE_IP}:{HTTP_PORT}"

[api]
listen = "127.0.0.1:{API_PORT}"

[power]
timeout_s = 10
concurrency = 8

[trustd]
listen = "{BRIDGE_IP}:{TRUSTD_PORT}"

[lifecycle]
powering_on_s = 60
dhcp_s = 120
script_s = 60
config_s = 180
trust_s = 180
max_attempts = 2
retry_base_s = 5
retry_max_s = 30
interval_s = 0.5
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _say(text: str) -> None:
    sys.stdout.write(f"\033[1m==> {text}\033[0m\n" if sys.stdout.isatty() else f"==> {text}\n")
    sys.stdout.flush()


@dataclass
class LabStack:
    """The lab plus a daemon serving it, driven through the real CLI."""

    state_dir: Path
    machines: int = 3
    firmware: str = "bios"
    dhcp_mode: str = "full"
    inventory: Path = DEFAULT_INVENTORY
    namespace: str = "pvlab"
    owner_pid: int | None = None
    backend: str = "qemu"  # or "libvirt": libvirtd + virtualbmc (lab/libvirt_backend.py)
    env: dict[str, str] = field(default_factory=dict)
    daemon_pid: int | None = None
    console_marks: dict[str, int] = field(default_factory=dict)

    @property
    def settings(self) -> Path:
        """The daemon's settings file."""
        return self.state_dir / "provisioner.toml"

    @property
    def daemon_log(self) -> Path:
        """Where the daemon's structured log goes."""
        return self.state_dir / "provisioner.log"

    @property
    def provisioner(self) -> str:
        """The provisioner command of this checkout's virtualenv."""
        venv = REPO / ".venv" / "bin" / "provisioner"
        return str(venv) if venv.exists() else "provisioner"

    def cli(
        self, *args: str, check: bool = True, capture: bool = False, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run `provisioner ARGS` inside the lab namespace with the lab's settings."""
        argv = [
            "ip",
            "netns",
            "exec",
            self.namespace,
            self.provisioner,
            "--config",
            str(self.settings),
            *args,
        ]
        return subprocess.run(
            argv,
            env=self.env,
            check=check,
            text=True,
            capture_output=capture,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def up(self) -> None:
        """Lab, assets, settings, inventory, secrets, daemon: everything but provisioning."""
        kind = self.firmware if self.backend == "qemu" else f"{self.firmware}, {self.backend}"
        _say(f"bringing the lab up: {self.machines} VMs ({kind}), bridge {BRIDGE_IP}/24, virtual BMCs")
        control.up(
            control.LabOptions(
                state_dir=self.state_dir,
                namespace=self.namespace,
                machines=self.machines,
                firmware=self.firmware,
                owner_pid=self.owner_pid,
                backend=self.backend,
            )
        )
        self.mark_consoles()
        self.env = {
            **os.environ,
            "LAB_BMC_PASSWORD": control.bmc_password(self.state_dir),
            "PROVISIONER_CONFIG": str(self.settings),
        }
        write_settings(self.settings, self.state_dir / "provisioner", dhcp_mode=self.dhcp_mode)
        _say("building the lab node: Debian kernel + an initramfs with a Talos-like first-boot agent")
        assets = self.state_dir / "node"
        subprocess.run(
            [sys.executable, "-m", "lab", "--state-dir", str(self.state_dir), "assets", str(assets)],
            check=True,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
        )
        shown = self.inventory.relative_to(REPO) if self.inventory.is_relative_to(REPO) else self.inventory
        _say(f"applying {shown}")
        self.cli("inventory", "apply", str(self.inventory))
        _say("importing the boot assets as set 'lab'")
        self.cli(
            "assets", "import", "lab", "--replace",
            "--kernel", str(assets / "vmlinuz"),
            "--initramfs", str(assets / "initramfs.gz"),
            "--cmdline", f"lab.trustd={BRIDGE_IP}:{TRUSTD_PORT}",
        )  # fmt: skip
        _say("creating the cluster's Talos secrets bundle (stored encrypted)")
        self.cli("cluster", "secrets", LAB_CLUSTER)
        self.start_daemon()

    def start_daemon(self) -> None:
        """Start `provisioner serve` in the namespace; wait for /healthz."""
        _say(f"starting the daemon in namespace {self.namespace} (log: {self.daemon_log})")
        with self.daemon_log.open("ab") as log:
            proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.namespace,
                    self.provisioner,
                    "serve",
                    "--config",
                    str(self.settings),
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.daemon_pid = proc.pid
        state = LabState.load(self.state_dir)
        if state is not None:
            state.add_process("daemon", proc.pid)  # `lab down` stops it too
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                msg = f"the daemon exited with {proc.returncode}; see {self.daemon_log}"
                raise control.LabError(msg)
            if self._healthy():
                return
            time.sleep(0.5)
        msg = f"the daemon did not answer /healthz within 60 s; see {self.daemon_log}"
        raise control.LabError(msg)

    def stop_daemon(self) -> None:
        """SIGTERM the daemon and wait for it."""
        if self.daemon_pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.daemon_pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(self.daemon_pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(self.daemon_pid, os.WNOHANG)[0]:
                    break
            time.sleep(0.2)
        self.daemon_pid = None

    def _healthy(self) -> bool:
        probe = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.namespace,
                "curl",
                "-sf",
                "-m",
                "2",
                f"http://{BRIDGE_IP}:{HTTP_PORT}/healthz",
            ],
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def mark_consoles(self) -> None:
        """Remember where each VM's serial log ends: `outcomes` reads the boots after it."""
        self.console_marks = {}
        for machine in lab_machines(self.machines):
            log = VmFiles.under(self.state_dir, machine.name).serial_log
            self.console_marks[log.name] = log.stat().st_size if log.exists() else 0

    def outcomes(self) -> list[MachineOutcome]:
        """Each inventory machine: state and attempts (daemon), agent boots (serial log).

        Only boots since the last `mark_consoles` count (a kept log of an earlier lab not).
        """
        listed = json.loads(self.cli("machines", "list", "--json", capture=True).stdout)
        outcomes = []
        for m in sorted(listed, key=lambda m: str(m["name"])):
            log = VmFiles.under(self.state_dir, str(m["name"])).serial_log
            outcomes.append(
                MachineOutcome(
                    name=str(m["name"]),
                    state=str(m["state"]),
                    attempts=int(m.get("attempts") or 0),
                    agent=read_agent_report(log, self.console_marks.get(log.name, 0)),
                )
            )
        return outcomes

    def down(self, *, keep_logs_in: Path | None = None) -> None:
        """Stop the daemon and take the lab down (copying the logs first, if asked)."""
        self.stop_daemon()
        if keep_logs_in is not None and self.state_dir.exists():
            keep_logs_in.mkdir(parents=True, exist_ok=True)
            for log in self.state_dir.glob("*.log"):
                shutil.copy(log, keep_logs_in / log.name)
        control.down(self.state_dir)
        remove_demo_files(self.state_dir, keep_logs=False)


def remove_demo_files(state_dir: Path, *, keep_logs: bool) -> None:
    """Remove what the demo added to a lab's state directory (settings, database, assets)."""
    shutil.rmtree(state_dir / "provisioner", ignore_errors=True)
    shutil.rmtree(state_dir / "node", ignore_errors=True)
    (state_dir / "provisioner.toml").unlink(missing_ok=True)
    if not keep_logs:
        (state_dir / "provisioner.log").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        state_dir.rmdir()  # only if nothing else is left


def _look_around(stack: LabStack) -> str:
    token_file = stack.state_dir / "provisioner" / "api-token"
    ns = f"ip netns exec {stack.namespace}"
    cfg = f"--config {stack.settings}"
    return f"""
The lab and the daemon are still running. Look around:
  {ns} .venv/bin/provisioner {cfg} machines list
  {ns} .venv/bin/provisioner {cfg} machines events lab-w1
  {ns} curl -s -H "Authorization: Bearer $(cat {token_file})" \\
      http://127.0.0.1:{API_PORT}/api/v1/machines
  {ns} curl -s http://127.0.0.1:{API_PORT}/metrics | grep ^provisioner_
  serial consoles:  {stack.state_dir}/lab-*.log (grep LAB-AGENT)
  daemon log:       {stack.daemon_log}
  python -m lab status
Tear it all down with: make demo-down
"""


def demo_main(state_dir: Path) -> int:
    """Run the demo; exit status 0 only if every lab machine reached Provisioned at once."""
    if LabState.load(state_dir) is not None:
        sys.stderr.write(f"a lab is already up in {state_dir}: run `make demo-down` first\n")
        return 1
    stack = LabStack(state_dir=state_dir)
    interrupted = False

    def on_signal(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.up()
        _say("provisioning every lab machine: PXE once -> power on -> DHCP -> iPXE -> config -> trusted")
        result = stack.cli("provision", "--all", "--wait", "--timeout", "900", check=False, timeout=1000)
    except KeyboardInterrupt:
        interrupted = True
        result = None
    except (control.LabError, subprocess.CalledProcessError, OSError) as exc:
        sys.stderr.write(f"demo failed: {exc}\n")
        stack.down()
        return 1
    if interrupted:
        _say("interrupted: taking the lab down")
        stack.down()
        return 130
    assert result is not None  # noqa: S101 - set on every path that gets here
    _say("lab machines: attempts (daemon) and agent markers (serial consoles)")
    outcomes = stack.outcomes()
    sys.stdout.write(outcome_table(outcomes))
    problems = first_attempt_problems(outcomes)
    if result.returncode == 0 and not problems:
        _say("every lab machine is Provisioned and Trusted, each on its first attempt")
    elif result.returncode == 0:
        _say("every lab machine is Provisioned, but not each on its first attempt:")
        sys.stdout.write("".join(f"    {problem}\n" for problem in problems))
    else:
        _say(
            f"provisioning did not finish (exit {result.returncode}); see the daemon log: {stack.daemon_log}"
        )
    sys.stdout.write(_look_around(stack))
    return result.returncode or (1 if problems else 0)
