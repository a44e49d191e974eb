"""A writer for the ``newc`` cpio format the Linux kernel unpacks as an initramfs (sans-I/O).

Format (kernel Documentation/driver-api/early-userspace/buffer-format.rst): each entry is
the magic ``070701``, thirteen 8-digit hex fields, the NUL-terminated name padded to a
multiple of 4 bytes (counting the 110-byte header), then the data padded to 4. The archive
ends with an entry named ``TRAILER!!!``. Writing it ourselves lets the image hold device
nodes (``/dev/console``) without mknod and without the host's file owners.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

__all__ = ["CpioEntry", "newc_archive"]


@dataclass(frozen=True)
class CpioEntry:
    """One file, directory, symlink (data = target) or device node of the archive."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _header(ino: int, entry: CpioEntry) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (
        ino, entry.mode, 0, 0, nlink, 0, len(entry.data),
        0, 0, entry.rdev_major, entry.rdev_minor, len(entry.name) + 1, 0,
    )  # fmt: skip
    return b"070701" + b"".join(f"{value:08X}".encode("ascii") for value in fields)


def newc_archive(entries: list[CpioEntry]) -> bytes:
    """Return the archive of ``entries`` (parents must come before their children)."""
    out = bytearray()
    for ino, entry in enumerate([*entries, CpioEntry("TRAILER!!!", 0)], start=1):
        head = _header(ino, entry) + entry.name.encode() + b"\0"
        out += head + _pad(len(head)) + entry.data + _pad(len(entry.data))
    return bytes(out)
