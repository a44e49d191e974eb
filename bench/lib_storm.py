"""The boot storm against `provisioner serve` (issue 17): set up, run, measure, clean up.

The daemon runs unmodified in the server namespace of docs/benchmarks.md's topology; the
simulated rack (bench/lib_storm_sim.py: machines + Redfish BMCs) in the client one, each
machine with its own address there. Everything goes through the real CLI: inventory
apply, assets import, cluster secrets, `provision --all`, `machines list --json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lib_storm_wire import machine_address
from lib_topology import SERVER_IP, namespaces, sh

REPO = Path(__file__).resolve().parents[1]
HTTP_PORT = 8080
TRUSTD_PORT = 50001
BMC_PORT = 8000
STAGES = (
    "firmware",
    "dhcp",
    "tftp",
    "dhcp_ipxe",
    "scripts",
    "assets",
    "config",
    "trustd",
    "serving",
    "trust_check",
)


@dataclass
class Options:
    """What one storm run does."""

    machines: int = 100
    firmware_delay: tuple[float, float] = (1.0, 5.0)
    asset_mib: float = 16.0  # kernel + initramfs together
    direct_share: float = 0.1  # of machines broadcasting on the segment (no relay)
    timeout_s: float = 600.0
    database_url: str = ""
    profile: Path | None = None  # py-spy record output (SVG), if wanted


@dataclass
class Outcome:
    """What a run measured."""

    machines: int
    provisioned: int = 0
    time_to_provisioned: float = 0.0
    time_to_booted: float = 0.0
    stages: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0
    db_bytes: int = 0
    states: dict[str, int] = field(default_factory=dict)


def plan_machines(n: int, direct_share: float) -> list[dict[str, Any]]:
    """N machine identities; every round(1/direct_share)-th one is directly attached."""
    every = round(1 / direct_share) if direct_share > 0 else 0
    out = []
    for i in range(n):
        mac = f"02:5e:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:01"
        out.append({
            "index": i, "name": f"s{i:05d}", "mac": mac, "uuid": f"00000000-0000-4000-8000-{i:012x}",
            "serial": f"ST{i:06d}", "ip": machine_address(i), "direct": bool(every) and i % every == every - 1,
        })  # fmt: skip
    return out


def write_inventory(path: Path, machines: list[dict[str, Any]]) -> None:
    cluster = (
        "kind: Cluster\nname: storm\ntalosVersion: v1.13.0\nkubernetesVersion: 1.33.0\n"
        f"endpoint: https://{machines[0]['ip']}:6443\nassetSet: storm\ninstallDisk: /dev/sda\n"
    )
    docs = [cluster]
    for m in machines:
        role = "controlplane" if m["index"] == 0 else "worker"
        docs.append(
            f"kind: Machine\nname: {m['name']}\ncluster: storm\nrole: {role}\nmacs: [{m['mac']}]\n"
            f"uuid: {m['uuid']}\nserial: {m['serial']}\nip: {m['ip']}\nhostname: {m['name']}\n"
            f"bmc: {{driver: redfish, address: 10.88.0.2, port: {BMC_PORT}, username: admin, "
            f"password: storm, options: {{scheme: http, system: {m['name']}}}}}\n"
        )
    path.write_text("---\n".join(docs), encoding="utf-8")


def write_settings(path: Path, state_dir: Path, iface: str, database_url: str) -> None:
    db = f'database_url = "{database_url}"\n' if database_url else ""
    path.write_text(
        f"""state_dir = "{state_dir}"
log_format = "json"
{db}
[dhcp]
mode = "full"
interfaces = ["{iface}"]
server_address = "{SERVER_IP}"
unknown_machines = "record"
relay_agents = ["10.88.0.2"]

[[dhcp.subnet]]
cidr = "10.88.0.0/16"
pool = "10.88.200.1-10.88.250.250"
gateway = "{SERVER_IP}"
lease_time = 3600

[http]
listen = "{SERVER_IP}:{HTTP_PORT}"
public_url = "http://{SERVER_IP}:{HTTP_PORT}"

[power]
timeout_s = 30
concurrency = 64

[trustd]
listen = "{SERVER_IP}:{TRUSTD_PORT}"

[lifecycle]
max_attempts = 1
""",
        encoding="utf-8",
    )


def make_assets(directory: Path, mib: float) -> tuple[Path, Path]:
    """Kernel and initramfs of random bytes, sized 1/4 and 3/4 of MIB (Talos's ratio is ~1:4)."""
    directory.mkdir(parents=True, exist_ok=True)
    total = int(mib * (1 << 20))
    kernel, initramfs = directory / "vmlinuz", directory / "initramfs.xz"
    kernel.write_bytes(os.urandom(total // 4))
    initramfs.write_bytes(os.urandom(total - total // 4))
    return kernel, initramfs


class Daemon:
    """`provisioner serve` in the server namespace, and its CLI."""

    def __init__(self, ns: str, settings: Path, log: Path) -> None:
        self.ns, self.settings, self.log = ns, settings, log
        self.exe = str(REPO / ".venv" / "bin" / "provisioner")
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_kib = 0

    def cli(self, *args: str, timeout: float = 900) -> str:
        argv = ["ip", "netns", "exec", self.ns, self.exe, "--config", str(self.settings), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            msg = f"provisioner {' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()[-800:]}"
            raise RuntimeError(msg)
        return done.stdout

    def start(self) -> None:
        with self.log.open("ab") as log:
            argv = ["ip", "netns", "exec", self.ns, self.exe, "serve", "--config", str(self.settings)]
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"the daemon exited with {self.proc.returncode}; see {self.log}"
                raise RuntimeError(msg)
            probe = sh("ip", "netns", "exec", self.ns, "curl", "-sf", "-m", "2",
                       f"http://{SERVER_IP}:{HTTP_PORT}/healthz", check=False)  # fmt: skip
            if probe.returncode == 0:
                return
            time.sleep(0.3)
        msg = "the daemon did not answer /healthz within 60 s"
        raise RuntimeError(msg)

    def cpu_s(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_peak_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def simulator(ns: str, plan: dict[str, Any], work: Path) -> Iterator[Path]:
    """Run the simulated rack in NS; yield where its report will be; stop it after."""
    plan_path, out = work / "plan.json", work / "sim.json"
    plan_path.write_text(json.dumps(plan))
    log = (work / "sim.log").open("ab")
    argv = [
        "ip",
        "netns",
        "exec",
        ns,
        sys.executable,
        str(REPO / "bench" / "lib_storm_sim.py"),
        str(plan_path),
        str(out),
    ]
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not Path(str(out) + ".ready").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                msg = f"the simulator did not start; see {work / 'sim.log'}"
                raise RuntimeError(msg)
            time.sleep(0.1)
        yield out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def add_addresses(ns: str, iface: str, machines: list[dict[str, Any]]) -> None:
    """Every machine's own address on the client side (ip -batch: one process for all)."""
    batch = "".join(f"addr add {m['ip']}/16 dev {iface}\n" for m in machines)
    # The directly attached clients broadcast to 255.255.255.255: with no default route in
    # the namespace that needs a route of its own (firmware sends it on its only NIC).
    batch += f"route add 255.255.255.255/32 dev {iface}\n"
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True)


def client_iface(ns: str) -> str:
    out = sh("ip", "-n", ns, "-o", "link", "show", "type", "veth").stdout
    return out.split(":")[1].strip().split("@")[0]


def collect(outcome: Outcome, sim: dict[str, Any], start: float) -> None:
    """Per-stage durations (each stage from the end of the one before) and failures."""
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    booted = 0.0
    for marks in sim["stages"].values():
        prev = marks.get("power_on")
        for s in STAGES:
            if s in marks and prev is not None:
                stages[s].append(marks[s] - prev)
                prev = marks[s]
        if "config" in marks:
            booted = max(booted, marks["config"] - start)
    outcome.stages = {s: v for s, v in stages.items() if v}
    outcome.failures = dict(sim["failures"])
    outcome.requests = dict(sim["requests"])
    outcome.time_to_booted = booted


def run_ours(opts: Options, work: Path | None = None) -> Outcome:
    """One storm against `provisioner serve`; everything it made is removed after."""
    with contextlib.ExitStack() as outer:
        if work is None:
            work = Path(outer.enter_context(tempfile.TemporaryDirectory(prefix="pv-storm-")))
        return _run_ours(opts, work)
    msg = "unreachable"
    raise AssertionError(msg)


def _run_ours(opts: Options, work: Path) -> Outcome:
    with contextlib.ExitStack() as stack:
        os.chmod(work, 0o755)  # noqa: PTH101 - the daemon may run as another user in a namespace
        srv, cli = stack.enter_context(namespaces("storm"))
        siface = client_iface(srv)
        machines = plan_machines(opts.machines, opts.direct_share)
        add_addresses(cli, client_iface(cli), machines)
        settings = work / "provisioner.toml"
        write_settings(settings, work / "state", siface, opts.database_url)
        daemon = Daemon(srv, settings, work / "daemon.log")
        inventory = work / "inventory.yaml"
        write_inventory(inventory, machines)
        kernel, initramfs = make_assets(work / "assets", opts.asset_mib)
        daemon.cli("inventory", "apply", str(inventory))
        daemon.cli(
            "assets", "import", "storm", "--replace", "--kernel", str(kernel), "--initramfs", str(initramfs)
        )
        daemon.cli("cluster", "secrets", "storm")
        plan = {"server": SERVER_IP, "machines": machines, "bmc": True, "bmc_port": BMC_PORT,
                "firmware_delay": list(opts.firmware_delay), "trustd": f"{SERVER_IP}:{TRUSTD_PORT}"}  # fmt: skip
        sim_out = stack.enter_context(simulator(cli, plan, work))
        daemon.start()
        stack.callback(daemon.stop)
        profiler = None
        if opts.profile is not None:
            assert daemon.proc is not None
            profiler = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(daemon.proc.pid), "-o", str(opts.profile), "-r", "50", "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        outcome = Outcome(machines=opts.machines)
        cpu0 = daemon.cpu_s()
        t0 = time.monotonic()
        sim_t0 = _sim_clock(work)
        daemon.cli("provision", "--all")
        deadline = t0 + opts.timeout_s
        while time.monotonic() < deadline:
            listed = json.loads(daemon.cli("machines", "list", "--json"))
            states: dict[str, int] = {}
            for m in listed:
                states[m["state"]] = states.get(m["state"], 0) + 1
            outcome.states = states
            failed = Path(f"{sim_out}.failed")
            if (
                failed.exists()
                and len(failed.read_text().splitlines()) + states.get("Provisioned", 0) >= opts.machines
            ):
                break  # every machine either made it or failed in the simulator: no more will come
            if states.get("Provisioned", 0) == opts.machines:
                outcome.time_to_provisioned = time.monotonic() - t0
                break
            if states.get("Provisioned", 0) + states.get("Failed", 0) == opts.machines:
                break  # every machine in a final state
            time.sleep(0.25)
        outcome.provisioned = outcome.states.get("Provisioned", 0)
        outcome.cpu_s = daemon.cpu_s() - cpu0
        outcome.peak_rss_mib = daemon.rss_peak_kib() / 1024
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(60)
        daemon.stop()
        outcome.db_bytes = sum(p.stat().st_size for p in (work / "state").glob("*.db*"))
        stack.close()  # stops the simulator, which writes its report
    collect(outcome, json.loads(sim_out.read_text()), sim_t0)
    return outcome


def _sim_clock(work: Path) -> float:
    """The simulator's clock origin relative to now: its marks are seconds since its start."""
    ready = Path(str(work / "sim.json") + ".ready")
    return time.time() - ready.stat().st_mtime if ready.exists() else 0.0
