"""The storm's floor: the stack an operator would otherwise assemble (issue 17, item 3).

dnsmasq for DHCP (static host entries, relayed and direct) and TFTP (the same iPXE
binary), nginx for boot.ipxe, one static script and one static config per machine, and
the assets. No lifecycle, no tokens, no trust: the machines boot as soon as the run
starts (same firmware delays), and "booted" is each machine's config fetch.
STORM_FLOOR_KEEP=DIR keeps the floor's work directory (logs, configs) for a look after.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from lib_storm import (
    HTTP_PORT,
    Options,
    Outcome,
    add_addresses,
    client_iface,
    collect,
    make_assets,
    plan_machines,
    simulator,
)
from lib_topology import SERVER_IP, ensure_tools, namespaces

BASE = f"http://{SERVER_IP}:{HTTP_PORT}"
# A machine config of Talos's size (~20 KB rendered), with no OS CA: the simulated node
# then serves no certificate, as nothing would check it.
PADDING = "# " + "x" * 78 + "\n"


def write_www(www: Path, machines: list[dict[str, Any]], kernel: Path, initramfs: Path) -> None:
    (www / "m").mkdir(parents=True)
    (www / "c").mkdir()
    (www / "assets").mkdir()
    os.link(kernel, www / "assets" / "kernel")
    os.link(initramfs, www / "assets" / "initramfs")
    (www / "boot.ipxe").write_text(f"#!ipxe\nchain --replace --autofree {BASE}/m/${{mac:hexhyp}}.ipxe\n")
    for m in machines:
        key = m["mac"].replace(":", "-")
        cfg = f"{BASE}/c/{key}.yaml"
        (www / "m" / f"{key}.ipxe").write_text(
            f"#!ipxe\nkernel {BASE}/assets/kernel talos.platform=metal console=ttyS0 talos.config={cfg}\n"
            f"initrd {BASE}/assets/initramfs\nboot\n"
        )
        (www / "c" / f"{key}.yaml").write_text(
            f"version: v1alpha1\nmachine:\n  type: worker\n  network:\n    hostname: {m['name']}\n"
            + PADDING * 250
        )


def nginx_conf(work: Path, www: Path) -> Path:
    conf = work / "nginx.conf"
    conf.write_text(f"""worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
daemon off;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    server {{ listen {SERVER_IP}:{HTTP_PORT}; root {www}; default_type application/octet-stream; }}
}}
""")  # fmt: skip
    return conf


def dnsmasq_argv(work: Path, iface: str, machines: list[dict[str, Any]]) -> list[str]:
    hosts = work / "hosts.conf"
    hosts.write_text("".join(f"{m['mac']},{m['ip']}\n" for m in machines))
    return [
        "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", f"--interface={iface}",
        "--bind-interfaces", "--user=root", f"--pid-file={work / 'dnsmasq.pid'}", "--log-facility=-",
        "--dhcp-range=10.88.0.0,static,255.255.0.0", "--dhcp-authoritative", "--no-ping",
        f"--dhcp-leasefile={work / 'dnsmasq.leases'}", "--dhcp-lease-max=100000", "--quiet-dhcp",
        f"--dhcp-hostsfile={hosts}", "--dhcp-userclass=set:ipxe,iPXE",
        f"--dhcp-boot=tag:ipxe,{BASE}/boot.ipxe", "--dhcp-boot=tag:!ipxe,undionly.kpxe,,10.88.0.1",
        "--enable-tftp", "--tftp-root=/usr/lib/ipxe", "--tftp-max=10000",
    ]  # fmt: skip


def run_floor(opts: Options) -> Outcome:
    """The same storm against dnsmasq + nginx; every namespace and process removed after."""
    ensure_tools({"dnsmasq": "dnsmasq", "nginx": "nginx-light"})
    keep = os.environ.get("STORM_FLOOR_KEEP")
    with (
        (
            contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="pv-storm-floor-")
        ) as tmp,
        contextlib.ExitStack() as stack,
    ):
        work = Path(tmp)
        os.chmod(work, 0o755)  # noqa: PTH101 - nginx workers read as another user
        srv, cli = stack.enter_context(namespaces("stormf"))
        machines = plan_machines(opts.machines, opts.direct_share)
        add_addresses(cli, client_iface(cli), machines)
        www = work / "www"
        kernel, initramfs = make_assets(work / "src", opts.asset_mib)
        write_www(www, machines, kernel, initramfs)
        procs = []
        for name, argv in (("nginx", ["nginx", "-c", str(nginx_conf(work, www)), "-p", str(work)]),
                           ("dnsmasq", dnsmasq_argv(work, client_iface(srv), machines))):  # fmt: skip
            log = stack.enter_context((work / f"{name}.log").open("ab"))
            proc = subprocess.Popen(["ip", "netns", "exec", srv, *argv], stdout=log, stderr=log)
            procs.append(proc)
            stack.callback(_stop, proc)
        time.sleep(1.0)
        plan = {
            "server": SERVER_IP,
            "machines": machines,
            "bmc": False,
            "firmware_delay": list(opts.firmware_delay),
        }
        t0 = time.monotonic()
        with simulator(cli, plan, work) as out:
            deadline = t0 + opts.timeout_s
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        outcome = Outcome(machines=opts.machines)
        collect(outcome, json.loads(out.read_text()), 0.0)
        return outcome


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
