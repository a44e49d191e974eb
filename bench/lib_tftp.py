"""bench/tftp: our TFTP server against tftpd-hpa and dnsmasq, in two network namespaces.

Topology (docs/benchmarks.md): namespaces `pv-tftp-<rand>-srv` (10.88.0.1/16) and `...-cli`
(10.88.0.2/16) joined by a veth pair; every server listens on 10.88.0.1:69 in turn, every
client runs in the client namespace. Metrics (MiB/s, median of --runs):

- single_64m_blk512 / single_64m_blk1468: one 64 MiB file, curl --tftp-blksize N
  (lockstep RFC 1350; blksize 512 also crosses the block-number rollover);
- single_64m_blk512_win16 / single_64m_blk1468_win16: the same with atftp asking for
  windowsize 16 (RFC 7440); the peers do not negotiate it and fall back to lockstep;
- concurrent_20x8m_blk1468: 20 curl downloads of an 8 MiB file at once, aggregate.

`python bench/lib_tftp.py serve ...` is the entry used inside the server namespace to run
our server; everything else is the driver. Every namespace and process is removed at the
end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lib_topology import SERVER_IP, ensure_tools, namespaces, sh

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from provisioner.events import Event

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
TOOLS = {"in.tftpd": "tftpd-hpa", "dnsmasq": "dnsmasq", "atftp": "atftp", "curl": "curl"}


@contextlib.contextmanager
def server_process(argv: list[str], ready: Callable[[], bool]) -> Iterator[None]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                msg = f"server did not start: {argv}: {err}"
                raise RuntimeError(msg)
            time.sleep(0.05)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def port69_bound(ns: str) -> Callable[[], bool]:
    def check() -> bool:
        out = sh("ip", "netns", "exec", ns, "ss", "-Huln", "sport = :69", check=False).stdout
        return bool(out.strip())

    return check


def peers(ns: str, root: Path, work: Path) -> dict[str, list[str]]:
    python = str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    ours = [python, str(Path(__file__).resolve()), "serve", "--root", str(root)]
    hpa = ["in.tftpd", "-L", "-s", str(root), "-a", f"{SERVER_IP}:69"]
    dns = [
        "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--enable-tftp",
        f"--tftp-root={root}", f"--listen-address={SERVER_IP}", "--bind-interfaces",
        "--user=root", f"--pid-file={work / 'dnsmasq.pid'}", "--log-facility=-",
        "--tftp-max=100",
    ]  # fmt: skip
    return {name: ["ip", "netns", "exec", ns, *argv] for name, argv in
            (("ours", ours), ("tftpd-hpa", hpa), ("dnsmasq", dns))}  # fmt: skip


def timed(argvs: list[list[str]], expect_bytes: int) -> float:
    """Run the commands at once; MiB/s over the wall time, after checking sizes."""
    start = time.perf_counter()
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for a in argvs]
    outs = [p.communicate(timeout=300) for p in procs]
    elapsed = time.perf_counter() - start
    for proc, (out, err) in zip(procs, outs, strict=True):
        if proc.returncode != 0:
            msg = f"client failed ({proc.returncode}): {err.decode()[-300:]}"
            raise RuntimeError(msg)
        del out
    return expect_bytes * len(argvs) / MIB / elapsed


def curl(ns: str, name: str, blksize: int, dest: Path) -> list[str]:
    return ["ip", "netns", "exec", ns, "curl", "-sS", "--tftp-blksize", str(blksize),
            "-o", str(dest), f"tftp://{SERVER_IP}/{name}"]  # fmt: skip


def atftp(ns: str, name: str, blksize: int, window: int, dest: Path) -> list[str]:
    return ["ip", "netns", "exec", ns, "atftp", "--option", f"blksize {blksize}",
            "--option", f"windowsize {window}", "-g", "-r", name, "-l", str(dest),
            SERVER_IP, "69"]  # fmt: skip


def check_file(dest: Path, size: int) -> None:
    if dest.stat().st_size != size:
        msg = f"{dest} has {dest.stat().st_size} bytes, expected {size}"
        raise RuntimeError(msg)
    dest.unlink()


def measure(cli: str, out: Path) -> dict[str, float]:
    """One sample of every case against the server that is running now."""
    big, small = 64 * MIB, 8 * MIB
    cases: dict[str, Callable[[], float]] = {}

    def single(argv: list[str], dest: Path, size: int) -> float:
        rate = timed([argv], size)
        check_file(dest, size)
        return rate

    def lockstep(blk: int) -> Callable[[], float]:
        dest = out / f"c{blk}"
        return lambda: single(curl(cli, "f64m.bin", blk, dest), dest, big)

    def windowed(blk: int) -> Callable[[], float]:
        dest = out / f"a{blk}"
        return lambda: single(atftp(cli, "f64m.bin", blk, 16, dest), dest, big)

    for blk in (512, 1468):
        cases[f"single_64m_blk{blk}"] = lockstep(blk)
        cases[f"single_64m_blk{blk}_win16"] = windowed(blk)

    def concurrent() -> float:
        dests = [out / f"p{i}" for i in range(20)]
        rate = timed([curl(cli, "f8m.bin", 1468, d) for d in dests], small)
        for dest in dests:
            check_file(dest, small)
        return rate

    cases["concurrent_20x8m_blk1468"] = concurrent
    return {name: run() for name, run in cases.items()}


def drive(runs: int) -> int:
    ensure_tools(TOOLS)
    with tempfile.TemporaryDirectory(prefix="pv-tftp-bench-") as tmp:
        root, out = Path(tmp) / "root", Path(tmp) / "out"
        root.mkdir()
        out.mkdir()
        (root / "f64m.bin").write_bytes(os.urandom(64 * MIB))
        (root / "f8m.bin").write_bytes(os.urandom(8 * MIB))
        os.chmod(tmp, 0o755)  # noqa: PTH101 - dnsmasq and tftpd drop privileges
        samples: dict[str, dict[str, list[float]]] = {}
        with namespaces("tftp") as (srv, cli):
            # Runs are interleaved (ours, tftpd-hpa, dnsmasq, ours, ...) so that drift in
            # a shared machine's load hits every server alike; the median is reported.
            for run in range(runs):
                for name, argv in peers(srv, root, Path(tmp)).items():
                    with server_process(argv, port69_bound(srv)):
                        for metric, rate in measure(cli, out).items():
                            samples.setdefault(name, {}).setdefault(metric, []).append(rate)
                    print(f"run {run + 1}/{runs}: measured {name}", file=sys.stderr, flush=True)
    results = {
        name: {metric: statistics.median(rates) for metric, rates in metrics.items()}
        for name, metrics in samples.items()
    }
    report(results)
    return 0


def report(results: dict[str, dict[str, float]]) -> None:
    names = list(results["ours"])
    width = max(len(n) for n in names)
    print(f"TFTP, MiB/s (median), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"{'test':<{width}}  {'ours':>8}  {'tftpd-hpa':>9}  {'dnsmasq':>8}")
    for metric in names:
        row = [results[p][metric] for p in ("ours", "tftpd-hpa", "dnsmasq")]
        print(f"{metric:<{width}}  {row[0]:>8.1f}  {row[1]:>9.1f}  {row[2]:>8.1f}")
    for metric in names:
        ours = results["ours"][metric]
        for peer in ("tftpd-hpa", "dnsmasq"):
            theirs = results[peer][metric]
            print(
                f"RESULT tftp_{metric} ours={ours:.1f} {peer}={theirs:.1f} "
                f"ratio={ours / theirs:.2f} unit=MiB/s"
            )


def serve(
    root: Path,
    host: str,
    port: int,
    block_size_max: int | None = None,
    events: Path | None = None,
) -> None:
    """Run our server (production defaults) until SIGTERM; optionally log events as JSON lines."""
    sys.path.insert(0, str(REPO))
    from provisioner.settings import TftpSettings
    from provisioner.tftp import FileSource, TftpServer

    class CountingSink:
        def __init__(self) -> None:
            self.count = 0

        def emit(self, event: Event) -> None:
            self.count += 1
            if events is not None:
                with events.open("a", encoding="utf-8") as out:
                    out.write(json.dumps({"kind": event.kind, **event.data}) + "\n")

    async def main() -> None:
        settings = TftpSettings(port=port, max_transfers_per_client=64)
        if block_size_max is not None:
            settings = settings.model_copy(update={"block_size_max": block_size_max})
        server = TftpServer(settings, CountingSink(), FileSource(root, patterns=("*",)), host=host)
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run")
    run.add_argument("--runs", type=int, default=3)
    srv = sub.add_parser("serve")
    srv.add_argument("--root", type=Path, required=True)
    srv.add_argument("--host", default=SERVER_IP)
    srv.add_argument("--port", type=int, default=69)
    srv.add_argument("--block-size-max", type=int, default=None)
    srv.add_argument("--events", type=Path, default=None, help="append events as JSON lines")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.root, args.host, args.port, args.block_size_max, args.events)
        return 0
    return drive(getattr(args, "runs", 3))


if __name__ == "__main__":
    sys.exit(main())
