"""`provisioner dhcp probe IFACE`: broadcast a DISCOVER and list every server that answers.

Diagnostics, not a hot path, so scapy builds and parses the packets (raw sockets: root).
Useful before turning on full DHCP (is there a site server already? docs/threats.md A21) and to
see what a proxyDHCP answers a PXE client (`--pxe`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

__all__ = ["ProbeAnswer", "probe"]


@dataclass(frozen=True, slots=True)
class ProbeAnswer:
    """One server's reply to the probe."""

    server_id: str
    source_ip: str
    source_mac: str
    message_type: int
    yiaddr: str
    siaddr: str
    boot_file: str
    lease_time: int | None
    vendor_class: str


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.rstrip(b"\0").decode("ascii", "backslashreplace")
    return "" if value is None else str(value)


def probe(
    iface: str, *, timeout: float = 3.0, pxe: bool = False, mac: str | None = None
) -> list[ProbeAnswer]:
    """Send one DISCOVER on `iface`, collect the OFFERs for `timeout` seconds."""
    from scapy.config import conf
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import AsyncSniffer, sendp

    conf.verb = 0
    src = mac or _iface_mac(iface)
    xid = secrets.randbits(32)
    options: list[object] = [("message-type", "discover")]
    if pxe:
        options += [(93, b"\x00\x07"), ("vendor_class_id", b"PXEClient:Arch:00007:UNDI:003000")]
    options += [("param_req_list", [1, 3, 6, 12, 15, 51, 54, 60, 66, 67]), "end"]
    frame = (
        Ether(src=src, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=bytes.fromhex(src.replace(":", "")), xid=xid, flags=0x8000)
        / DHCP(options=options)
    )
    sniffer = AsyncSniffer(
        iface=iface,
        store=True,
        lfilter=lambda p: p.haslayer(BOOTP) and p[BOOTP].xid == xid and p[BOOTP].op == 2,
    )
    sniffer.start()
    time.sleep(0.3)
    sendp(frame, iface=iface)
    time.sleep(timeout)
    answers: dict[tuple[str, str], ProbeAnswer] = {}
    for pkt in sniffer.stop() or []:
        opts = {o[0]: o[1] for o in pkt[DHCP].options if isinstance(o, tuple)} if pkt.haslayer(DHCP) else {}
        answer = ProbeAnswer(
            server_id=_text(opts.get("server_id")) or pkt[IP].src,
            source_ip=pkt[IP].src,
            source_mac=pkt[Ether].src,
            message_type=int(opts.get("message-type", 0)),
            yiaddr=pkt[BOOTP].yiaddr,
            siaddr=pkt[BOOTP].siaddr,
            boot_file=_text(opts.get("boot-file-name")) or _text(pkt[BOOTP].file),
            lease_time=int(opts["lease_time"]) if "lease_time" in opts else None,
            vendor_class=_text(opts.get("vendor_class_id")),
        )
        answers.setdefault((answer.server_id, answer.source_mac), answer)
    return sorted(answers.values(), key=lambda a: (a.server_id, a.source_mac))


def _iface_mac(iface: str) -> str:
    from pathlib import Path

    return Path(f"/sys/class/net/{iface}/address").read_text(encoding="ascii").strip()
