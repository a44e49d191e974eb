"""Issue 14 (low): a proxyDHCP REQUEST on port 4011 is answered to its sender.

PXE spec 2.1 §2.2.7 (and RFC 4578's PXE model): the client unicasts its boot-server
REQUEST to port 4011 and the server answers where it came from. Before the fix a forged
`ciaddr` X made us send the ACK (with our boot file) to X: a reflector towards any
address on the network.
"""

from __future__ import annotations

from tests.dhcp.harness import Harness, make_config
from tests.dhcp.packets import OVMF, client_packet, reply_options

KNOWN = "52:54:00:77:00:11"


def test_4011_request_with_forged_ciaddr_is_answered_to_the_sender() -> None:
    h = Harness(make_config(mode="proxy"))
    packet = client_packet("request", KNOWN, ciaddr="10.77.0.200", arch=7, vendor=OVMF["vendor"])
    [out] = h.send(packet, addr=("10.77.0.55", 4011), proxy_port=True)
    assert out.addr == ("10.77.0.55", 4011)  # the sender, not the forged ciaddr
    assert reply_options(out.data)[1]["message-type"] == 5


def test_4011_request_from_no_address_is_dropped() -> None:
    h = Harness(make_config(mode="proxy"))
    packet = client_packet("request", KNOWN, ciaddr="10.77.0.200", arch=7, vendor=OVMF["vendor"])
    assert h.send(packet, addr=("0.0.0.0", 4011), proxy_port=True) == []
