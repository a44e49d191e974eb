"""DHCPv4 option codes and message types we read or write (RFC 2132, RFC 4578, RFC 3046).

Only codes; decoding lives in `codec.py` next to the bounds checks. Each constant cites the
document that defines it so that the policy code reads as the RFCs do.
"""

from __future__ import annotations

import enum

__all__ = ["MessageType", "Opt"]


class MessageType(enum.IntEnum):
    """Option 53 values (RFC 2132 §9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Opt(enum.IntEnum):
    """Option codes (RFC 2132 unless noted)."""

    PAD = 0
    SUBNET_MASK = 1  # §3.3
    ROUTER = 3  # §3.5
    DNS = 6  # §3.8
    HOSTNAME = 12  # §3.14
    DOMAIN = 15  # §3.17
    BROADCAST = 28  # §5.3
    VENDOR_SPECIFIC = 43  # §8.4; PXE spec §2.4 carries PXE sub-options here
    REQUESTED_IP = 50  # §9.1
    LEASE_TIME = 51  # §9.2
    OVERLOAD = 52  # §9.3
    MESSAGE_TYPE = 53  # §9.6
    SERVER_ID = 54  # §9.7
    PARAM_REQUEST_LIST = 55  # §9.8
    MESSAGE = 56  # §9.9
    MAX_MESSAGE_SIZE = 57  # §9.10
    RENEWAL_T1 = 58  # §9.11
    REBINDING_T2 = 59  # §9.12
    VENDOR_CLASS = 60  # §9.13
    CLIENT_ID = 61  # §9.14
    TFTP_SERVER = 66  # §9.4
    BOOTFILE = 67  # §9.5
    USER_CLASS = 77  # RFC 3004
    FQDN = 81  # RFC 4702
    RELAY_AGENT_INFO = 82  # RFC 3046
    CLIENT_ARCH = 93  # RFC 4578 §2.1
    CLIENT_NDI = 94  # RFC 4578 §2.2
    CLIENT_UUID = 97  # RFC 4578 §2.3
    IPXE_ENCAP = 175  # iPXE's private encapsulated options
    END = 255


# Fixed BOOTP header layout (RFC 951 / RFC 2131 §2, figure 1).
BOOTP_HEADER_LEN = 236
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 §3
MIN_MESSAGE_SIZE = 576  # RFC 2131 §2: every client must accept 576-byte messages
MAX_UDP_PAYLOAD = 1472  # 1500-byte Ethernet MTU - 20 IP - 8 UDP
