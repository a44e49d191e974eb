"""A scripted PXE firmware client (scapy) for the proxyDHCP test; prints JSON.

DISCOVER with PXE options (arch 7, PXEClient, UUID) by broadcast; collect every OFFER;
REQUEST the address offer from its server; then, like PXE firmware after a proxy offer,
ask the boot server on port 4011 by unicast.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import uuid as uuid_mod

from scapy.all import AsyncSniffer, conf, sendp
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

PXE = [(93, b"\x00\x07"), ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003000")]


def opts_of(pkt: BOOTP) -> dict[str, object]:
    return {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)}


def summary(pkt: BOOTP) -> dict[str, object]:
    opts = opts_of(pkt)

    def text(v: object) -> object:
        return v.decode(errors="replace") if isinstance(v, bytes) else v

    return {
        "yiaddr": pkt.yiaddr,
        "siaddr": pkt.siaddr,
        "file": pkt.file.rstrip(b"\0").decode(errors="replace"),
        "type": opts.get("message-type"),
        "server_id": opts.get("server_id"),
        "vendor": text(opts.get("vendor_class_id")),
        "bootfile": text(opts.get("boot-file-name")),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--mac", required=True)
    p.add_argument("--uuid", required=True)
    p.add_argument("--proxy", required=True)
    args = p.parse_args()
    conf.verb = 0
    mac = bytes.fromhex(args.mac.replace(":", ""))
    pxe = [*PXE, (97, b"\x00" + uuid_mod.UUID(args.uuid).bytes_le)]
    frame = (
        Ether(src=args.mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
    )
    offers: list[dict[str, object]] = []
    for _attempt in range(4):  # firmware retries DISCOVER too; the site server may be starting
        sniffer = AsyncSniffer(
            iface=args.iface, lfilter=lambda p: p.haslayer(UDP) and p[UDP].dport == 68, store=True
        )
        sniffer.start()
        time.sleep(0.5)
        discover = BOOTP(chaddr=mac, xid=0x1111, flags=0x8000) / DHCP(
            options=[("message-type", "discover"), *pxe, "end"]
        )
        sendp(frame / discover, iface=args.iface)
        time.sleep(2.5)
        offers = [summary(p[BOOTP]) for p in sniffer.stop() if p.haslayer(BOOTP) and p[BOOTP].xid == 0x1111]
        if any(o["yiaddr"] != "0.0.0.0" for o in offers):
            break
    result: dict[str, object] = {"offers": offers}
    lease = next((o for o in offers if o["yiaddr"] != "0.0.0.0"), None)
    if lease is not None:
        sniffer = AsyncSniffer(
            iface=args.iface, lfilter=lambda p: p.haslayer(UDP) and p[UDP].dport == 68, store=True
        )
        sniffer.start()
        time.sleep(0.5)
        sendp(
            frame
            / BOOTP(chaddr=mac, xid=0x2222, flags=0x8000)
            / DHCP(
                options=[
                    ("message-type", "request"),
                    ("requested_addr", lease["yiaddr"]),
                    ("server_id", lease["server_id"]),
                    *pxe,
                    "end",
                ]
            ),
            iface=args.iface,
        )
        time.sleep(2)
        acks = [summary(p[BOOTP]) for p in sniffer.stop() if p.haslayer(BOOTP) and p[BOOTP].xid == 0x2222]
        result["acks"] = acks
        address = str(lease["yiaddr"])
        subprocess.run(["ip", "addr", "add", f"{address}/24", "dev", args.iface], check=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 68))
        sock.settimeout(3)
        request = BOOTP(chaddr=mac, xid=0x3333, ciaddr=address) / DHCP(
            options=[("message-type", "request"), *pxe, "end"]
        )
        sock.sendto(bytes(request), (args.proxy, 4011))
        try:
            data, _ = sock.recvfrom(4096)
            result["boot_ack"] = summary(BOOTP(data))
        except TimeoutError:
            result["boot_ack"] = None
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
