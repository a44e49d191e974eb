"""``python -m lab up|status|down|machines|assets``: the lab's command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from lab import control
from lab.machines import lab_machines
from lab.markers import read_agent_report
from lab.vm import FIRMWARES

__all__ = ["main"]


def _state_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("LAB_STATE_DIR", "var/lab"))


def _cmd_up(args: argparse.Namespace) -> int:
    options = control.LabOptions(
        state_dir=_state_dir(args.state_dir),
        namespace=args.namespace,
        bridge=args.bridge,
        machines=args.machines,
        firmware=args.firmware,
        memory_mib=args.memory,
        owner_pid=os.getpid() if args.foreground else None,
        backend=args.backend,
    )
    try:
        control.up(options)
    except (control.LabError, OSError, ValueError) as exc:
        sys.stderr.write(f"lab up failed: {exc}\nrun `python -m lab down` to clean up\n")
        return 1
    _cmd_status(args)
    if args.foreground:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        sys.stdout.write("lab up: running; Ctrl-C or SIGTERM takes it down\n")
        sys.stdout.flush()
        stop.wait()
        control.down(options.state_dir)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    found = control.status(_state_dir(args.state_dir))
    if found is None:
        sys.stdout.write("lab: not up\n")
        return 3
    state, vms = found
    header = (
        f"namespace {state.namespace}  bridge {state.bridge} 10.77.0.1/24 fd77::1/64  "
        f"firmware {state.firmware}  backend {state.backend}  state {state.state_dir}"
    )
    lines = [header]
    for record in state.processes:
        running = "running" if control.alive(record) else "DEAD"
        lines.append(f"process {record.role:6} pid {record.pid:<8} {running}")
    lines += vm_lines(vms)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return 0


def vm_lines(vms: list[control.VmStatus]) -> list[str]:
    """The VM part of ``lab status``: power, BMC, serial log, and what the node agent said.

    AGENT is the last marker of the last boot; every boot whose agent failed gets a line
    of its own with the agent's reason, so the operator sees why without the serial log.
    """
    lines = [f"{'VM':10} {'POWER':5} {'BMC (in namespace)':20} {'BOOTS':5} SERIAL LOG / AGENT"]
    for vm in vms:
        report = read_agent_report(vm.serial_log)
        lines.append(f"{vm.name:10} {vm.power:5} {vm.bmc:20} {len(report.boots):<5} {vm.serial_log}")
        if report.last and not report.last.startswith("FAILED"):  # a failure has its own line
            lines.append(f"{'':43}agent: {report.last}")
        lines += [f"{'':43}agent FAILED in {failure}" for failure in report.failures]
    return lines


def _cmd_down(args: argparse.Namespace) -> int:
    if args.all or args.stale:
        for namespace in control.down_registered(stale_only=args.stale):
            sys.stdout.write(f"lab: took down {namespace}\n")
        return 0
    if not control.down(_state_dir(args.state_dir), keep_logs=args.keep_logs):
        sys.stdout.write("lab: nothing recorded, nothing to do\n")
    from lab.demo import remove_demo_files

    remove_demo_files(_state_dir(args.state_dir), keep_logs=args.keep_logs)
    return 0


def _cmd_machines(args: argparse.Namespace) -> int:
    rows = [dataclasses.asdict(m) for m in lab_machines(args.count)]
    sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    return 0


def _cmd_assets(args: argparse.Namespace) -> int:
    from lab.initramfs import build_initramfs, find_kernel

    directory = Path(args.directory)
    directory.mkdir(parents=True, exist_ok=True)
    kernel, release = find_kernel()
    shutil.copyfile(kernel, directory / "vmlinuz")
    build_initramfs(directory / "initramfs.gz", release)
    sys.stdout.write(
        f"{directory / 'vmlinuz'}  (Debian {release})\n{directory / 'initramfs.gz'}\n"
        "kernel command line: console=ttyS0 talos.config=URL [lab.trustd=HOST:PORT]"
        " (+ initrd=initramfs.gz for EFI)\n"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from lab.demo import demo_main

    return demo_main(_state_dir(args.state_dir).resolve())


def main(argv: list[str] | None = None) -> int:
    """Run the lab command line."""
    parser = argparse.ArgumentParser(prog="python -m lab", description="the virtual lab")
    parser.add_argument("--state-dir", help="state directory (env LAB_STATE_DIR, var/lab)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="create network, BMCs (VMs stay off)")
    p_up.add_argument("--machines", type=int, default=3)
    p_up.add_argument("--firmware", choices=FIRMWARES, default="bios")
    p_up.add_argument("--backend", choices=control.BACKENDS, default="qemu")
    p_up.add_argument("--memory", type=int, default=256, help="MiB per VM (Talos needs 2048+)")
    p_up.add_argument("--namespace", default="pvlab")
    p_up.add_argument("--bridge", default="labbr0")
    p_up.add_argument("--foreground", action="store_true", help="stay; take down on signal")
    p_up.set_defaults(func=_cmd_up)
    sub.add_parser("status", help="show VMs, power, BMCs").set_defaults(func=_cmd_status)
    p_down = sub.add_parser("down", help="remove everything the lab created")
    p_down.add_argument("--keep-logs", action="store_true")
    which = p_down.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every registered lab")
    which.add_argument("--stale", action="store_true", help="registered labs whose owner died")
    p_down.set_defaults(func=_cmd_down)
    p_machines = sub.add_parser("machines", help="print the machine table as JSON")
    p_machines.add_argument("--count", type=int, default=3)
    p_machines.set_defaults(func=_cmd_machines)
    p_assets = sub.add_parser("assets", help="write the lab node kernel and initramfs to DIR")
    p_assets.add_argument("directory")
    p_assets.set_defaults(func=_cmd_assets)
    sub.add_parser("demo", help="the whole flow: lab, daemon, provision --all --wait").set_defaults(
        func=_cmd_demo
    )
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result
