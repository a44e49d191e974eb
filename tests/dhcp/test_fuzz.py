"""A seeded scapy fuzz() run plus raw byte mutation: thousands of packets, server still answers."""

from __future__ import annotations

import random
import time

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.packet import fuzz, raw

from provisioner.dhcp.codec import parse
from tests.dhcp.loopback import loopback_service
from tests.dhcp.packets import client_packet

SEED = 20261125


def corpus(n: int) -> list[bytes]:
    random.seed(SEED)  # scapy's volatile values draw from `random`
    rng = random.Random(SEED)
    out: list[bytes] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            pkt = fuzz(BOOTP(chaddr=rng.randbytes(6))) / DHCP(
                options=[("message-type", rng.randint(1, 8)), "end"]
            )
        elif kind == 1:
            pkt = BOOTP(chaddr=rng.randbytes(6)) / fuzz(DHCP(options=[("message-type", "discover"), "end"]))
        else:
            base = bytearray(
                client_packet(
                    "discover",
                    "02:00:00:{:02x}:{:02x}:{:02x}".format(*tuple(rng.randbytes(3))),
                    vendor=b"PXEClient",
                    arch=7,
                )
            )
            for _ in range(rng.randint(1, 8)):
                base[rng.randrange(len(base))] = rng.randrange(256)
            if rng.random() < 0.3:
                del base[rng.randrange(236, len(base)) :]
            out.append(bytes(base))
            continue
        try:
            out.append(raw(pkt))
        except Exception:  # noqa: S112 - scapy cannot always serialise its own fuzz values
            continue
    return out


def test_fuzz_thousands_then_still_answering() -> None:
    packets = corpus(4000)
    assert len(packets) > 3000
    with loopback_service(subnet=[{"cidr": "127.0.0.0/8", "pool": "127.1.0.0-127.1.255.255"}]) as lb:
        for i, data in enumerate(packets):
            lb.send(data)
            if i % 200 == 0:
                time.sleep(0.01)  # let the loop breathe; this is about survival, not load
        lb.replies(1.0)
        counters = lb.counters()
        assert counters.get("dropped_handler_error", 0) == 0
        assert counters["received"] >= len(packets) * 0.95
        assert counters.get("dropped_malformed", 0) > 100
        lb.send(client_packet("discover", "02:fe:00:00:00:01", xid=0xF00D))
        replies = [r for r in lb.replies(1.0) if parse(r).xid == 0xF00D]
        assert replies and parse(replies[0]).message_type == 2
