"""The lab network: a namespace holding a bridge and one tap per VM.

Everything is created with ``ip`` and removed by name. Nothing is routed out of the
namespace: the bridge has 10.77.0.1/24 and fd77::1/64 and no uplink.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BRIDGE_CIDR",
    "BRIDGE_CIDR6",
    "BRIDGE_MAC",
    "NetnsError",
    "add_tap",
    "create_bridge",
    "create_namespace",
    "delete_link",
    "delete_namespace",
    "link_exists",
    "namespace_exists",
    "netns_argv",
]

BRIDGE_CIDR = "10.77.0.1/24"
BRIDGE_CIDR6 = "fd77::1/64"
BRIDGE_MAC = "52:54:00:77:00:01"
_NETNS_DIR = Path("/run/netns")


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def _ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        msg = f"{' '.join(argv)}: {proc.stderr.strip()}"
        raise NetnsError(msg)
    return proc.stdout


def netns_argv(namespace: str, argv: Sequence[str]) -> list[str]:
    """Return ``argv`` prefixed so that it runs inside ``namespace``."""
    return ["ip", "netns", "exec", namespace, *argv]


def namespace_exists(namespace: str) -> bool:
    """Tell whether the named network namespace exists."""
    return (_NETNS_DIR / namespace).exists()


def create_namespace(namespace: str) -> None:
    """Create ``namespace`` with its loopback up. Fails if it already exists."""
    _ip("netns", "add", namespace)
    _ip("link", "set", "lo", "up", namespace=namespace)


def create_bridge(namespace: str, bridge: str, mac: str = BRIDGE_MAC) -> None:
    """Create the lab bridge inside ``namespace`` with its IPv4 and ULA IPv6 addresses."""
    # A fixed MAC: otherwise a bridge takes its lowest port's and changes as taps come.
    _ip("link", "add", bridge, "address", mac, "type", "bridge", "forward_delay", "0",
        namespace=namespace)  # fmt: skip
    # No STP: a single bridge, and STP would hold new ports in listening state.
    _ip("link", "set", bridge, "type", "bridge", "stp_state", "0", namespace=namespace)
    _ip("addr", "add", BRIDGE_CIDR, "dev", bridge, namespace=namespace)
    _ip("addr", "add", BRIDGE_CIDR6, "dev", bridge, "nodad", namespace=namespace)
    _ip("link", "set", bridge, "up", namespace=namespace)
    disable_tx_checksum_offload(namespace, bridge)


def disable_tx_checksum_offload(namespace: str, bridge: str) -> None:
    """Have the kernel complete UDP checksums of what the host sends over the bridge.

    With transmit checksum offload (a bridge inherits it from taps that have vnet headers,
    as libvirt's taps do) the daemon's DHCP answers leave with a partial checksum and the
    offload flag; QEMU hands them on with a virtio-net header, and firmware that checks
    UDP checksums (iPXE) drops them. Turned off on the bridge, the stack checksums in
    software before the bridge forwards to any tap (ethtool -K: "wanted" features stay off
    when ports join).
    """
    argv = netns_argv(namespace, ["ethtool", "-K", bridge, "tx", "off"])
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = f"{' '.join(argv)}: {proc.stderr.strip() or 'failed'} (apt-get install ethtool)"
        raise NetnsError(msg)


def add_tap(namespace: str, bridge: str, tap: str) -> None:
    """Create tap ``tap`` (persistent, for QEMU) enslaved to ``bridge``, link up."""
    _ip("tuntap", "add", "dev", tap, "mode", "tap", namespace=namespace)
    _ip("link", "set", tap, "master", bridge, namespace=namespace)
    _ip("link", "set", tap, "up", namespace=namespace)


def link_exists(namespace: str, link: str) -> bool:
    """Tell whether ``link`` exists in ``namespace`` (False if the namespace is gone)."""
    if not namespace_exists(namespace):
        return False
    out = _ip("-o", "link", "show", "dev", link, namespace=namespace, check=False)
    return bool(out.strip())


def delete_link(namespace: str, link: str) -> None:
    """Delete ``link`` from ``namespace`` if both exist."""
    if link_exists(namespace, link):
        _ip("link", "delete", link, namespace=namespace, check=False)


def delete_namespace(namespace: str) -> None:
    """Delete ``namespace`` (its links go with it); no error if it is absent."""
    if namespace_exists(namespace):
        _ip("netns", "delete", namespace, check=False)
