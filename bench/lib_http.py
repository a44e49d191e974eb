"""bench/http: boot-asset serving, ours vs nginx, in two network namespaces.

Topology (docs/benchmarks.md): server namespace 10.88.0.1/16, client namespace 10.88.0.2/16, one
veth pair. Both servers serve the same directory (`<state>/assets`) and run side by side: ours
through the production app (`provisioner.web.app.create_app`: routing, metrics, the JSON
access log written to a file, sendfile), nginx with `sendfile on` and 2 workers. Each
measurement of ours is paired with one of nginx right next to it (alternating which goes
first), and the median of `--runs` pairs is reported.

Tests: one 64 MiB download, one 256 MiB download, 50 concurrent 64 MiB downloads
(aggregate), all with `curl -s -o /dev/null`; every download's size is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lib_topology import SERVER_IP, ensure_tools, namespaces, sh

REPO = Path(__file__).resolve().parent.parent
OURS_PORT = 8080
NGINX_PORT = 8081
BARE_PORT = 8082
MIB = 1 << 20
MB = 1_000_000


def port_bound(ns: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        out = sh("ip", "netns", "exec", ns, "ss", "-Htln", f"sport = :{port}", check=False).stdout
        return bool(out.strip())

    return check


@contextlib.contextmanager
def server_process(
    argv: list[str], ready: Callable[[], bool], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                msg = f"server did not start: {argv}: {log.read_text()[-2000:]}"
                raise RuntimeError(msg)
            time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (nginx workers), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(c) for c in (task / "children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def nginx_conf(work: Path, assets: Path) -> Path:
    conf = work / "nginx.conf"
    conf.write_text(
        f"""worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log {work}/nginx-access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 15;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    server {{
        listen {SERVER_IP}:{NGINX_PORT};
        location /assets/ {{ alias {assets}/; default_type application/octet-stream; }}
    }}
}}
"""
    )
    return conf


def downloads(cli: str, url: str, count: int, size: int) -> float:
    """`count` concurrent curl downloads of `url`; returns aggregate MB/s."""
    argv = ["ip", "netns", "exec", cli, "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}\n"]
    started = time.perf_counter()
    procs = [subprocess.Popen([*argv, url], stdout=subprocess.PIPE, text=True) for _ in range(count)]
    outs = [p.communicate()[0] for p in procs]
    elapsed = time.perf_counter() - started
    for p, out in zip(procs, outs, strict=True):
        if p.returncode != 0 or int(out.strip() or 0) != size:
            msg = f"download of {url} failed: rc={p.returncode} size={out.strip()}"
            raise RuntimeError(msg)
    return count * size / MB / elapsed


TESTS = (
    ("one 64 MiB", "http_64mib_single", "s64", 64 * MIB, 1),
    ("one 256 MiB", "http_256mib_single", "s256", 256 * MIB, 1),
    ("50 x 64 MiB at once, aggregate", "http_64mib_x50_aggregate", "s64", 64 * MIB, 50),
)


def drive(runs: int, clients: int) -> int:
    ensure_tools({"nginx": "nginx-light", "curl": "curl"})
    work = Path(tempfile.mkdtemp(prefix="pv-bench-http-"))
    work.chmod(0o755)  # nginx workers run unprivileged and must read the assets
    try:
        state = work / "state"
        state.mkdir()
        py = sys.executable
        print("preparing 64 MiB and 256 MiB asset sets ...", flush=True)
        sh(py, str(Path(__file__).resolve()), "prepare", str(state))
        conf = nginx_conf(work, state / "assets")
        results: dict[str, dict[str, list[float]]] = {"ours": {}, "nginx": {}, "bare": {}}
        moved = {"ours": 0, "nginx": 0, "bare": 0}
        with namespaces("http") as (srv, cli), contextlib.ExitStack() as stack:
            me = str(Path(__file__).resolve())
            ours = stack.enter_context(
                server_process(
                    [
                        "ip",
                        "netns",
                        "exec",
                        srv,
                        py,
                        me,
                        "serve",
                        str(state),
                        f"{SERVER_IP}:{OURS_PORT}",
                        str(work / "access.log"),
                    ],
                    port_bound(srv, OURS_PORT),
                    work / "ours.log",
                )
            )
            nginx = stack.enter_context(
                server_process(
                    ["ip", "netns", "exec", srv, "nginx", "-c", str(conf), "-p", str(work)],
                    port_bound(srv, NGINX_PORT),
                    work / "nginx.log",
                )
            )
            bare = stack.enter_context(
                server_process(
                    [
                        "ip",
                        "netns",
                        "exec",
                        srv,
                        py,
                        me,
                        "serve-bare",
                        str(state),
                        f"{SERVER_IP}:{BARE_PORT}",
                    ],
                    port_bound(srv, BARE_PORT),
                    work / "bare.log",
                )
            )
            bases = {
                "ours": f"http://{SERVER_IP}:{OURS_PORT}",
                "nginx": f"http://{SERVER_IP}:{NGINX_PORT}",
                "bare": f"http://{SERVER_IP}:{BARE_PORT}",
            }
            pids = {"ours": ours.pid, "nginx": nginx.pid, "bare": bare.pid}
            cpu = dict.fromkeys(bases, 0.0)
            # Both servers run side by side; each measurement of ours is paired with one of
            # nginx taken right after (or before: the order alternates), so load drift on a
            # shared machine hits both alike. Round 0 warms the page cache and both servers.
            for rnd in range(runs + 1):
                for _, key, asset, size, count in TESTS:
                    n = clients if count > 1 else 1
                    order = ["ours", "nginx", "bare"] if rnd % 2 else ["bare", "nginx", "ours"]
                    for name in order:
                        before = cpu_seconds(pids[name])
                        rate = downloads(cli, f"{bases[name]}/assets/{asset}/kernel", n, size)
                        if rnd:
                            cpu[name] += cpu_seconds(pids[name]) - before
                            moved[name] += n * size
                            results[name].setdefault(key, []).append(rate)
                print(f"round {rnd}{' (warm-up)' if rnd == 0 else ''} done", flush=True)
        cpu_per_gb = {name: cpu[name] / (moved[name] / 1e9) for name in cpu}
        report(results, cpu_per_gb, clients, runs, work)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(
    results: dict[str, dict[str, list[float]]],
    cpu_per_gb: dict[str, float],
    clients: int,
    runs: int,
    work: Path,
) -> None:
    print()
    print(f"{'test':<36} {'ours MB/s':>10} {'nginx MB/s':>11} {'ratio':>7} {'bare aiohttp':>13} {'ratio':>7}")
    lines = []
    for label, key, _, _, count in TESTS:
        a = statistics.median(results["ours"][key])
        b = statistics.median(results["nginx"][key])
        c = statistics.median(results["bare"][key])
        shown = label.replace("50", str(clients)) if count > 1 else label
        print(f"{shown:<36} {a:>10.0f} {b:>11.0f} {a / b:>7.2f} {c:>13.0f} {c / b:>7.2f}")
        metric = key.replace("x50", f"x{clients}")
        lines.append(f"RESULT {metric} ours={a:.0f} nginx={b:.0f} ratio={a / b:.2f} unit=MB/s")
    print(
        f"{'server CPU-s per GB':<36} {cpu_per_gb['ours']:>10.2f} {cpu_per_gb['nginx']:>11.2f}"
        f" {'':>7} {cpu_per_gb['bare']:>13.2f}"
    )
    print("(bare aiohttp: web.FileResponse in a one-route app, no middleware, metrics or log)")
    logged = count_lines(work / "access.log")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"(median of {runs} paired runs; access log lines written by ours: {logged};")
    print(f" load average at the end: {load}; CPUs: {os.cpu_count()})")
    for line in lines:
        print(line)


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def prepare(state: Path) -> None:
    """Create the two asset sets through the real import code."""
    sys.path.insert(0, str(REPO))
    from provisioner.store.assets import AssetSets
    from provisioner.store.db import create_schema
    from provisioner.store.repository import SqlStore

    async def main() -> None:
        store = SqlStore.open(f"sqlite+aiosqlite:///{state}/provisioner.db", state)
        await create_schema(store.engine)
        src = state.parent / "src"
        src.mkdir()
        block = os.urandom(MIB)
        for name, size in (("s64", 64), ("s256", 256)):
            with (src / f"{name}-k").open("wb") as out:
                for i in range(size):
                    out.write(block[i % 97 :] + block[: i % 97])
            (src / f"{name}-i").write_bytes(b"i" * 4096)
            await AssetSets(store, state / "assets").add(name, src / f"{name}-k", src / f"{name}-i")
        shutil.rmtree(src)
        await store.close()

    asyncio.run(main())


def serve(state: Path, listen: str, access_log: Path) -> None:
    """Our production web app on `listen`, with the JSON access log going to a file."""
    import logging

    sys.path.insert(0, str(REPO))
    from provisioner.directory import MachineDirectory
    from provisioner.events import MemoryEventSink
    from provisioner.settings import Settings
    from provisioner.store.repository import SqlStore
    from provisioner.web.context import WebRuntime
    from provisioner.web.service import WebServer

    handler = logging.FileHandler(access_log)
    logging.getLogger("provisioner.web.access").addHandler(handler)
    logging.getLogger("provisioner.web.access").setLevel(logging.INFO)
    logging.getLogger("provisioner.web.access").propagate = False

    class Sink(MemoryEventSink):
        def emit(self, event: object) -> None:  # keep memory flat over a long run
            pass

    async def main() -> None:
        settings = Settings(
            state_dir=state,
            http={"listen": listen},  # type: ignore[arg-type]
            api={"listen": "127.0.0.1:0"},  # type: ignore[arg-type]  # not measured; any free port
        )
        store = SqlStore.open(f"sqlite+aiosqlite:///{state}/provisioner.db", state)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        directory = MachineDirectory(store)
        rt = WebRuntime(
            settings=settings, store=store, events=Sink(), instance="bench", machines=directory.current
        )
        await directory.refresh()
        server = WebServer(rt)
        await server.start()
        await stop.wait()
        await server.stop()
        await store.close()

    asyncio.run(main())


def serve_bare(state: Path, listen: str) -> None:
    """Plain aiohttp: one route, web.FileResponse, nothing else (the floor for ours)."""
    from aiohttp import web

    async def asset(request: web.Request) -> web.FileResponse:
        return web.FileResponse(state / "assets" / request.match_info["name"] / request.match_info["file"])

    app = web.Application()
    app.router.add_get("/assets/{name}/{file}", asset)
    host, port = listen.rsplit(":", 1)
    web.run_app(app, host=host, port=int(port), access_log=None, print=None)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/http")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--runs", type=int, default=3)
    run.add_argument("--clients", type=int, default=50)
    p = sub.add_parser("prepare")
    p.add_argument("state", type=Path)
    s = sub.add_parser("serve")
    s.add_argument("state", type=Path)
    s.add_argument("listen")
    s.add_argument("access_log", type=Path)
    b = sub.add_parser("serve-bare")
    b.add_argument("state", type=Path)
    b.add_argument("listen")
    args = parser.parse_args()
    if args.cmd == "run":
        if os.geteuid() != 0:
            print("bench/http needs root (network namespaces)", file=sys.stderr)
            return 1
        return drive(args.runs, args.clients)
    if args.cmd == "prepare":
        prepare(args.state)
    elif args.cmd == "serve-bare":
        serve_bare(args.state, args.listen)
    else:
        serve(args.state, args.listen, args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
