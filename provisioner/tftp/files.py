"""What the TFTP server may serve: an allow-list, read-only, never outside the root.

Two sources, asked in this order:

1. a provider callback `(filename, client_ip) -> bytes | None`, through which the web
   layer supplies rendered files (an iPXE script for firmware that fetches one over
   TFTP). It only ever sees names that passed the checks below.
2. the iPXE directory (`tftp.ipxe_dir`, Debian's /usr/lib/ipxe by default), looked up at
   request time: a plain name directly inside it that matches an allow-list pattern
   (`*.kpxe`, `*.efi`, ...).

Refused, before any file system access (docs/threats.md B1, B4, B13):
- empty names, names longer than 255 bytes, control characters (NUL included);
- `..` anywhere, backslashes, and any `/` left after removing one leading `/` or the
  root's own absolute prefix (dnsmasq's rule: absolute paths only inside the root);
  the namespace is flat, so no subdirectory and no per-MAC prefix is ever served.

Symlinks: the real path of the file must lie inside the root, or inside one of
`link_dirs` (Debian's ipxe package links ipxe.efi to /boot/ipxe.efi, so the settings
factory trusts /boot for the stock directory; a link anywhere else is refused). The
check runs on every request, on the resolved path that is then opened with O_NOFOLLOW,
and the opened file must be a regular file. Small files are read whole at open (a
consistent snapshot, shared between transfers through a small cache keyed by inode, size
and mtime); large ones block by block.

Nothing here writes, creates or truncates anything: files are opened O_RDONLY and
read with pread.
"""

from __future__ import annotations

import collections
import fnmatch
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.tftp.codec import ErrorCode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from provisioner.settings import TftpSettings
    from provisioner.tftp.transfer import Buffer

__all__ = [
    "CACHE_BYTES",
    "DEBIAN_IPXE_DIR",
    "IPXE_PATTERNS",
    "MAX_NAME_LENGTH",
    "READ_AHEAD",
    "FileRefused",
    "FileSource",
    "OpenedFile",
    "PreadBuffer",
    "Provider",
]

MAX_NAME_LENGTH = 255
IPXE_PATTERNS = ("*.kpxe", "*.kkpxe", "*.efi", "*.pxe", "*.lkrn")
DEBIAN_IPXE_DIR = Path("/usr/lib/ipxe")
_DEBIAN_LINK_DIRS = (Path("/boot"),)  # ipxe.efi and ipxe.lkrn -> /boot/... in Debian 12

READ_WHOLE_MAX = 8 * 1024 * 1024
"""Files up to this size are read into memory at open; larger ones are read per block."""
READ_AHEAD = 128 * 1024
"""Large files are read this many bytes at a time (one pread serves 89-256 blocks)."""
CACHE_BYTES = 64 * 1024 * 1024
"""Budget of the shared cache of whole files (the iPXE binaries are 70-900 KiB)."""

Provider = Callable[[str, str], bytes | None]
"""`(filename, client_ip) -> bytes | None`: a rendered file, or None to fall through."""


class PreadBuffer:
    """A large file read with `os.pread` in read-ahead chunks, holding one descriptor.

    Not mmap: a file truncated while mapped kills the process with SIGBUS; pread just
    returns fewer bytes (and the transfer then ends short). Blocks are served from a
    `READ_AHEAD` chunk: one pread per 128 KiB instead of one per block (a 64 MiB file
    at blksize 512 is 131,072 blocks; the per-block pread was a fourth syscall on the
    lockstep hot path next to epoll_wait, recv and send, see docs/tftp.md).
    """

    def __init__(self, fd: int, size: int) -> None:
        """Take ownership of `fd`, a regular file of `size` bytes."""
        self._fd = fd
        self._size = size
        self._chunk = b""
        self._chunk_at = 0  # file offset of self._chunk[0]

    def __len__(self) -> int:
        """The size seen when the file was opened."""
        return self._size

    def __getitem__(self, key: slice, /) -> bytes:
        """Bytes `key.start` up to `key.stop` (the only form the transfer uses)."""
        start = key.start or 0
        stop = self._size if key.stop is None else min(key.stop, self._size)
        if stop <= start:
            return b""
        offset = start - self._chunk_at
        chunk = self._chunk
        if offset < 0 or stop - self._chunk_at > len(chunk):
            # Outside the chunk (next chunk, or a retransmission from before it): read
            # ahead from `start`. A short read (file truncated) yields a short block.
            chunk = os.pread(self._fd, max(stop - start, min(READ_AHEAD, self._size - start)), start)
            self._chunk, self._chunk_at, offset = chunk, start, 0
        return chunk[offset : offset + stop - start]

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A file ready to serve. `data` is bytes or a PreadBuffer; call `close()` after."""

    name: str
    data: Buffer
    size: int
    origin: str  # "provider" or "disk"

    def close(self) -> None:
        """Release the descriptor (no-op for in-memory data)."""
        if isinstance(self.data, PreadBuffer):
            self.data.close()


@dataclass(frozen=True, slots=True)
class FileRefused:
    """Why a name is not served: the TFTP error to send and a reason for the event log."""

    code: ErrorCode
    message: str
    reason: str
    """Short machine-readable cause: not_found, traversal, bad_name, symlink_out, ..."""

    @property
    def suspicious(self) -> bool:
        """True when the name looks like an attack rather than a typo (logged louder)."""
        return self.reason in {"traversal", "symlink_out", "bad_name"}


_NOT_FOUND = FileRefused(ErrorCode.FILE_NOT_FOUND, "File not found", "not_found")


class FileSource:
    """The allow-listed, read-only set of files the TFTP server answers from."""

    def __init__(
        self,
        root: Path,
        *,
        provider: Callable[[str, str], bytes | None] | None = None,
        patterns: Sequence[str] = IPXE_PATTERNS,
        link_dirs: Sequence[Path] = (),
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        """Serve `patterns` from `root` and whatever `provider` renders."""
        self._root = Path(os.path.realpath(root))
        self._prefix = str(Path(root).absolute()) + "/"
        self._provider = provider
        self._patterns = tuple(patterns)
        self._link_dirs = tuple(Path(os.path.realpath(d)) for d in link_dirs)
        # Boot storms fetch the same few files: one shared copy per (inode, size, mtime)
        # instead of one per transfer. A changed file has a new key; LRU within budget.
        self._cache: collections.OrderedDict[tuple[int, int, int, int], bytes] = collections.OrderedDict()
        self._cache_budget = cache_bytes
        self._cached = 0

    @classmethod
    def from_settings(
        cls,
        settings: TftpSettings,
        provider: Callable[[str, str], bytes | None] | None = None,
    ) -> FileSource:
        """The production source: iPXE binaries from `settings.ipxe_dir` plus `provider`."""
        links = _DEBIAN_LINK_DIRS if Path(settings.ipxe_dir) == DEBIAN_IPXE_DIR else ()
        return cls(settings.ipxe_dir, provider=provider, link_dirs=links)

    @property
    def root(self) -> Path:
        """The resolved root directory."""
        return self._root

    def check_name(self, filename: str) -> str | FileRefused:
        """The plain name to look up, or why `filename` is refused outright."""
        if not filename or len(filename.encode("latin-1", "replace")) > MAX_NAME_LENGTH:
            return FileRefused(ErrorCode.FILE_NOT_FOUND, "File not found", "bad_name")
        if not filename.isprintable():  # NUL and other control characters
            return FileRefused(ErrorCode.ACCESS_VIOLATION, "Access violation", "bad_name")
        name = filename
        if name.startswith(self._prefix):
            name = name[len(self._prefix) :]
        elif name.startswith("/"):
            name = name[1:]
        if ".." in name or "/" in name or "\\" in name or not name:
            return FileRefused(ErrorCode.ACCESS_VIOLATION, "Access violation", "traversal")
        return name

    def open(self, filename: str, client_ip: str) -> OpenedFile | FileRefused:
        """Open `filename` for `client_ip`, or say why not. Never raises for bad input."""
        name = self.check_name(filename)
        if isinstance(name, FileRefused):
            return name
        if self._provider is not None:
            rendered = self._provider(name, client_ip)
            if rendered is not None:
                return OpenedFile(name, rendered, len(rendered), "provider")
        if not any(fnmatch.fnmatchcase(name, p) for p in self._patterns):
            return _NOT_FOUND
        return self._open_disk(name)

    def _inside(self, real: Path) -> bool:
        return any(real.is_relative_to(d) for d in (self._root, *self._link_dirs))

    def _open_disk(self, name: str) -> OpenedFile | FileRefused:
        real = Path(os.path.realpath(self._root / name))
        if not self._inside(real):
            return FileRefused(ErrorCode.ACCESS_VIOLATION, "Access violation", "symlink_out")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return _NOT_FOUND
        except OSError:
            # ELOOP (the path became a link after realpath), EACCES, ...
            return FileRefused(ErrorCode.ACCESS_VIOLATION, "Access violation", "unreadable")
        return self._read(name, fd)

    def _read(self, name: str, fd: int) -> OpenedFile | FileRefused:
        """Take `fd` over: small files come whole (cached), large ones per block."""
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return _NOT_FOUND
            if info.st_size > READ_WHOLE_MAX:
                return OpenedFile(name, PreadBuffer(fd, info.st_size), info.st_size, "disk")
            key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
            data = self._cache.get(key)
            if data is None:
                data = os.pread(fd, info.st_size, 0)
                self._remember(key, data)
            else:
                self._cache.move_to_end(key)
        except OSError:
            os.close(fd)
            return FileRefused(ErrorCode.ACCESS_VIOLATION, "Access violation", "unreadable")
        os.close(fd)
        return OpenedFile(name, data, len(data), "disk")

    def _remember(self, key: tuple[int, int, int, int], data: bytes) -> None:
        if len(data) != key[2] or len(data) > self._cache_budget:
            return  # short read (file changing under us) or too big: do not keep it
        self._cache[key] = data
        self._cached += len(data)
        while self._cached > self._cache_budget:
            _, evicted = self._cache.popitem(last=False)
            self._cached -= len(evicted)
