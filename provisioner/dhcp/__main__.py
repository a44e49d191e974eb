"""Run the DHCP service alone: `python -m provisioner.dhcp SETTINGS.toml MACHINES.json`.

For tests, benchmarks and debugging (the daemon composes `DhcpService` itself). The
machine list is a JSON array of `MachineSummary` fields. Prints `READY` once listening;
SIGTERM/SIGINT stop it cleanly (SIGKILL is what the durability test uses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from provisioner.dhcp.leases import LeaseStore, MemoryLeaseStore
from provisioner.dhcp.service import DhcpService, TransportOptions
from provisioner.events import Event
from provisioner.matching import MachineIndex
from provisioner.model import MachineSummary
from provisioner.settings import load_settings
from provisioner.store.db import create_schema, make_engine
from provisioner.store.leases import SqlLeaseStore


class _LogSink:
    def emit(self, event: Event) -> None:
        logging.getLogger("provisioner.events").info("%s %s %s", event.kind, event.machine, event.message)


def _machines(path: Path | None) -> MachineIndex:
    if path is None:
        return MachineIndex([])
    items = json.loads(path.read_text(encoding="utf-8"))
    machines = []
    for item in items:
        item["macs"] = tuple(item.get("macs", ()))
        machines.append(MachineSummary(**item))
    return MachineIndex(machines)


async def _main(args: argparse.Namespace) -> int:
    settings = load_settings(args.settings, {})
    index = _machines(args.machines)
    engine = None
    store: LeaseStore
    if args.memory:
        store = MemoryLeaseStore()
    else:
        engine = make_engine(args.db_url or settings.db_url)
        await create_schema(engine)
        store = SqlLeaseStore(engine)
    service = DhcpService(
        settings.dhcp,
        http_base_url=args.http_base_url or settings.http.base_url,
        leases=store,
        machines=lambda: index,
        events=_LogSink(),
        options=TransportOptions(
            client_port=args.client_port,
            relay_port=args.relay_port,
            broadcast_address=args.broadcast,
            bind_to_device=not args.no_bind_device,
            instance=args.instance,
        ),
    )
    await service.start()
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await service.stop()
    await store.close()
    sys.stdout.write(json.dumps(service.counters(), sort_keys=True) + "\n")
    if engine is not None:
        await engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run until signalled."""
    parser = argparse.ArgumentParser(prog="python -m provisioner.dhcp")
    parser.add_argument("settings", type=Path)
    parser.add_argument("machines", type=Path, nargs="?")
    parser.add_argument("--db-url", default="")
    parser.add_argument("--memory", action="store_true", help="no persistence (tests only)")
    parser.add_argument("--http-base-url", default="")
    parser.add_argument("--instance", default="")
    parser.add_argument("--client-port", type=int, default=68)
    parser.add_argument("--relay-port", type=int, default=67)
    parser.add_argument("--broadcast", default="255.255.255.255")
    parser.add_argument("--no-bind-device", action="store_true")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
