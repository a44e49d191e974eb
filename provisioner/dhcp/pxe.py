"""The PXE decision table: what a booting client's DHCP options say -> what it is told to load.

Theory of operation
-------------------
Pure and total: `decide(request)` looks only at the options a client sent and returns a
`BootDecision` or None ("not a network-boot client, or one we cannot boot"). Whether the
machine may boot at all (inventory, `pxe_allowed`) is the policy's business, not this
table's. Rows, first match wins:

1. user class (option 77) `iPXE` -> the second stage, `http://<server>/boot.ipxe`. iPXE
   runs every chainloaded stage, so this row comes first or clients loop forever.
2. vendor class (option 60) `HTTPClient...` or an HTTP-boot arch (RFC 4578 / IANA
   "Processor Architecture Types": 15 x86, 16 x64, 19 arm64) -> UEFI HTTP boot: an
   `http://` URL in the file field, and option 60 `HTTPClient` echoed (UEFI spec 2.9
   §24.7.3: the firmware ignores offers without it).
3. vendor class `PXEClient...` -> firmware PXE over TFTP by arch (option 93, else the
   `Arch:NNNNN` field of option 60, PXE spec 2.1 §2.2.5):
   0 -> BIOS `undionly.kpxe`; 7 and 9 -> x86-64 UEFI (`snponly.efi` by default, settable
   to `ipxe.efi`); 11 -> arm64 UEFI. Other arches (IA32 EFI, Itanium, ...) get None.
4. anything else (udhcpc, dhclient, Talos itself) -> None.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "BootDecision",
    "BootFiles",
    "Firmware",
    "PxeRequest",
    "decide",
]

ARCH_BIOS = 0
ARCH_EFI_IA32 = 6
ARCH_EFI_BC = 7  # "EFI BC": x86-64 UEFI in practice (OVMF, most servers)
ARCH_EFI_X64 = 9
ARCH_EFI_ARM64 = 11
ARCH_HTTP_X86 = 15
ARCH_HTTP_X64 = 16
ARCH_HTTP_ARM64 = 19

PXE_VENDOR_PREFIX = b"PXEClient"
HTTP_VENDOR_PREFIX = b"HTTPClient"
IPXE_USER_CLASS = b"iPXE"


class Firmware(enum.StrEnum):
    """Which kind of client asked."""

    BIOS = "bios"
    UEFI_X64 = "uefi-x64"
    UEFI_ARM64 = "uefi-arm64"
    UEFI_HTTP_X64 = "uefi-http-x64"
    UEFI_HTTP_ARM64 = "uefi-http-arm64"
    IPXE = "ipxe"


@dataclass(frozen=True, slots=True)
class BootFiles:
    """File names served over TFTP, and HTTP paths for HTTP boot (relative to the base URL)."""

    bios: str = "undionly.kpxe"
    uefi_x64: str = "snponly.efi"
    uefi_arm64: str = "ipxe-arm64.efi"
    http_x64: str = "/tftp/snponly.efi"
    http_arm64: str = "/tftp/ipxe-arm64.efi"
    ipxe_script: str = "/boot.ipxe"


@dataclass(frozen=True, slots=True)
class PxeRequest:
    """The PXE-relevant parts of a DHCP request (options 93, 60, 77)."""

    arches: tuple[int, ...] = ()
    vendor_class: bytes = b""
    user_classes: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class BootDecision:
    """What to put in the reply: BOOTP `file` + option 67, over TFTP or HTTP."""

    firmware: Firmware
    filename: str
    via_tftp: bool
    """True: siaddr and option 66 name our TFTP server. False: `filename` is a URL."""
    vendor_class: bytes = PXE_VENDOR_PREFIX
    """Option 60 to send back (PXE spec §2.2.5; UEFI HTTP boot needs `HTTPClient`)."""


def _arch_from_vendor_class(vendor_class: bytes) -> int | None:
    # "PXEClient:Arch:00007:UNDI:003000" (PXE spec 2.1 §2.2.5)
    parts = vendor_class.split(b":")
    if len(parts) >= 3 and parts[1] == b"Arch" and parts[2].isdigit():
        return int(parts[2])
    return None


def _arch(request: PxeRequest) -> int | None:
    if request.arches:
        return request.arches[0]
    return _arch_from_vendor_class(request.vendor_class)


def decide(  # noqa: PLR0911 - one return per table row
    request: PxeRequest, base_url: str, files: BootFiles | None = None
) -> BootDecision | None:
    """Apply the table in the module docstring. `base_url` is `http://host[:port]`."""
    names = files or BootFiles()
    base = base_url.rstrip("/")
    if IPXE_USER_CLASS in request.user_classes:
        return BootDecision(Firmware.IPXE, base + names.ipxe_script, via_tftp=False)
    arch = _arch(request)
    if request.vendor_class.startswith(HTTP_VENDOR_PREFIX) or arch in (
        ARCH_HTTP_X86,
        ARCH_HTTP_X64,
        ARCH_HTTP_ARM64,
    ):
        if arch == ARCH_HTTP_ARM64:
            return BootDecision(
                Firmware.UEFI_HTTP_ARM64,
                base + names.http_arm64,
                via_tftp=False,
                vendor_class=HTTP_VENDOR_PREFIX,
            )
        if arch in (ARCH_HTTP_X64, ARCH_EFI_BC, ARCH_EFI_X64):
            return BootDecision(
                Firmware.UEFI_HTTP_X64,
                base + names.http_x64,
                via_tftp=False,
                vendor_class=HTTP_VENDOR_PREFIX,
            )
        return None
    if not request.vendor_class.startswith(PXE_VENDOR_PREFIX):
        return None
    if arch is None or arch == ARCH_BIOS:
        # Pre-RFC 4578 PXE ROMs send neither option 93 nor an Arch field: all were BIOS.
        return BootDecision(Firmware.BIOS, names.bios, via_tftp=True)
    if arch in (ARCH_EFI_BC, ARCH_EFI_X64):
        return BootDecision(Firmware.UEFI_X64, names.uefi_x64, via_tftp=True)
    if arch == ARCH_EFI_ARM64:
        return BootDecision(Firmware.UEFI_ARM64, names.uefi_arm64, via_tftp=True)
    return None
