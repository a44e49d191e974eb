"""A relay-style DHCP load client for tests (like perfdhcp, but it records every ACK).

Acts as a relay agent: sends from GIADDR:67 with giaddr set, so servers answer by unicast
to GIADDR:67. Modes:
- `dora`: N clients do DISCOVER/OFFER/REQUEST/ACK; each ACK is appended to OUT as
  `mac ip server` and flushed at once (the server may be SIGKILLed at any moment).
- `reboot`: for each `mac ip` line of IN, an INIT-REBOOT REQUEST; prints `mac ip ACK|NAK|-`.
"""

from __future__ import annotations

import argparse
import select
import socket
import sys
import time

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.packet import raw


def mac_of(i: int, prefix: int) -> bytes:
    return bytes([0x02, prefix, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255])


def packet(
    mtype: str, mac: bytes, xid: int, giaddr: str, requested: str | None = None, server: str | None = None
) -> bytes:
    opts: list[object] = [("message-type", mtype)]
    if requested:
        opts.append(("requested_addr", requested))
    if server:
        opts.append(("server_id", server))
    return raw(BOOTP(op=1, xid=xid, giaddr=giaddr, hops=1, chaddr=mac) / DHCP(options=[*opts, "end"]))


def reply(data: bytes) -> tuple[int, bytes, str, int, str] | None:
    try:
        pkt = BOOTP(data)
        opts = {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)}
        return (
            pkt.xid,
            bytes(pkt.chaddr[:6]),
            pkt.yiaddr,
            int(opts.get("message-type", 0)),
            str(opts.get("server_id", "")),
        )
    except Exception:
        return None


def dora(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind((args.giaddr, 67))
    target = (args.server, args.port)
    out = open(args.out, "a", buffering=1)  # noqa: SIM115, PTH123
    pending: dict[int, tuple[int, str, float]] = {}  # xid -> (client index, state, sent)
    next_client = 0
    done = 0
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline and (done < args.count or pending):
        while len(pending) < args.window and next_client < args.count:
            xid = (args.prefix << 24) | next_client
            sock.sendto(packet("discover", mac_of(next_client, args.prefix), xid, args.giaddr), target)
            pending[xid] = (next_client, "discover", time.monotonic())
            next_client += 1
        ready, _, _ = select.select([sock], [], [], 0.05)
        now = time.monotonic()
        if ready:
            data, _ = sock.recvfrom(4096)
            parsed = reply(data)
            if parsed is None or parsed[0] not in pending:
                continue
            xid, mac, yiaddr, mtype, server = parsed
            index, state, _ = pending[xid]
            if mtype == 2 and state == "discover":
                sock.sendto(packet("request", mac, xid, args.giaddr, yiaddr, server), target)
                pending[xid] = (index, "request", now)
            elif mtype == 5 and state == "request":
                out.write(f"{mac.hex(':')} {yiaddr} {server}\n")
                del pending[xid]
                done += 1
            elif mtype == 6:
                del pending[xid]
                done += 1
        for xid, (_index, _state, sent) in list(pending.items()):
            if now - sent > args.timeout:
                del pending[xid]  # give up on this one; counted as not done
                done += 1
    out.close()
    return 0


def reboot(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind((args.giaddr, 67))
    sock.settimeout(2.0)
    with open(args.inp) as fh:  # noqa: PTH123
        pairs = [line.split()[:2] for line in fh if line.strip()]
    for n, (mac, ip) in enumerate(pairs):
        xid = 0x7E000000 | n
        sock.sendto(
            packet("request", bytes.fromhex(mac.replace(":", "")), xid, args.giaddr, ip),
            (args.server, args.port),
        )
        result = "-"
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                data, _ = sock.recvfrom(4096)
            except TimeoutError:
                break
            parsed = reply(data)
            if parsed and parsed[0] == xid:
                result = {5: "ACK", 6: "NAK"}.get(parsed[3], "?") + f" {parsed[2]}"
                break
        sys.stdout.write(f"{mac} {ip} {result}\n")
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["dora", "reboot"])
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=67)
    p.add_argument("--giaddr", required=True)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--prefix", type=int, default=0x33)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--out", default="/dev/stdout")
    p.add_argument("--inp", default="")
    args = p.parse_args()
    return dora(args) if args.mode == "dora" else reboot(args)


if __name__ == "__main__":
    sys.exit(main())
