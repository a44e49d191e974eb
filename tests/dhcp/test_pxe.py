"""The PXE decision table, exhaustively over the inputs that matter."""

from __future__ import annotations

import itertools

import pytest

from provisioner.dhcp.pxe import BootDecision, BootFiles, Firmware, PxeRequest, decide

BASE = "http://10.77.0.1:8080"
VENDORS = [
    b"",
    b"PXEClient",
    b"PXEClient:Arch:00000:UNDI:002001",
    b"PXEClient:Arch:00007:UNDI:003000",
    b"PXEClient:Arch:00011:UNDI:003000",
    b"HTTPClient:Arch:00016:UNDI:003001",
    b"HTTPClient",
    b"udhcp 1.35.0",
    b"PXEClient:Arch:xx",
]
ARCHES: list[tuple[int, ...]] = [(), (0,), (6,), (7,), (9,), (11,), (15,), (16,), (19,), (0xFFFF,), (7, 0)]
USERS: list[tuple[bytes, ...]] = [(), (b"iPXE",), (b"other",)]


def expected(  # noqa: PLR0911 - one return per table row
    arches: tuple[int, ...], vendor: bytes, users: tuple[bytes, ...]
) -> tuple[Firmware, str, bool, bytes] | None:
    """The table restated independently."""
    if b"iPXE" in users:
        return (Firmware.IPXE, BASE + "/boot.ipxe", False, b"PXEClient")
    arch = arches[0] if arches else None
    if arch is None and vendor.startswith(b"PXEClient:Arch:") and vendor[15:20].isdigit():
        arch = int(vendor[15:20])
    if arch is None and vendor.startswith(b"HTTPClient:Arch:"):
        arch = int(vendor[16:21])
    if vendor.startswith(b"HTTPClient") or arch in (15, 16, 19):
        if arch == 19:
            return (Firmware.UEFI_HTTP_ARM64, BASE + "/tftp/ipxe-arm64.efi", False, b"HTTPClient")
        if arch in (16, 7, 9):
            return (Firmware.UEFI_HTTP_X64, BASE + "/tftp/snponly.efi", False, b"HTTPClient")
        return None
    if not vendor.startswith(b"PXEClient"):
        return None
    if arch in (None, 0):
        return (Firmware.BIOS, "undionly.kpxe", True, b"PXEClient")
    if arch in (7, 9):
        return (Firmware.UEFI_X64, "snponly.efi", True, b"PXEClient")
    if arch == 11:
        return (Firmware.UEFI_ARM64, "ipxe-arm64.efi", True, b"PXEClient")
    return None


@pytest.mark.parametrize(("arches", "vendor", "users"), list(itertools.product(ARCHES, VENDORS, USERS)))
def test_table(arches: tuple[int, ...], vendor: bytes, users: tuple[bytes, ...]) -> None:
    got = decide(PxeRequest(arches, vendor, users), BASE + "/")
    want = expected(arches, vendor, users)
    if want is None:
        assert got is None
    else:
        assert got == BootDecision(want[0], want[1], via_tftp=want[2], vendor_class=want[3])


def test_named_rows() -> None:
    """The firmware docs/testing.md lists, by name."""
    ipxe = decide(PxeRequest((0,), b"PXEClient:Arch:00000:UNDI:002001", (b"iPXE",)), BASE)
    assert ipxe is not None and ipxe.filename == "http://10.77.0.1:8080/boot.ipxe"
    ovmf = decide(PxeRequest((7,), b"PXEClient:Arch:00007:UNDI:003000"), BASE)
    assert ovmf is not None and (ovmf.filename, ovmf.via_tftp) == ("snponly.efi", True)
    http = decide(PxeRequest((16,), b"HTTPClient:Arch:00016:UNDI:003001"), BASE)
    assert http is not None and http.filename.startswith("http://") and http.vendor_class == b"HTTPClient"
    assert decide(PxeRequest((), b"udhcp 1.35.0"), BASE) is None
    efi = decide(PxeRequest((7,), b"PXEClient"), BASE, BootFiles(uefi_x64="ipxe.efi"))
    assert efi is not None and efi.filename == "ipxe.efi"
