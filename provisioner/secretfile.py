"""Files and directories that hold secrets: owner-only, created fresh, never through a link.

Issue 14: `cluster talosconfig --out` over an existing 0644 file left it 0644 and
followed a symlink placed at the path; the state directory was 0755 and the database
0644. Every secrets file we write goes through `write_private`; the state directory and
the SQLite files through `private_dir` and `private_db_file`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["private_db_file", "private_dir", "write_private"]

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_private(path: Path, data: str | bytes) -> None:
    """Write a secrets file with mode 0600.

    The content goes to a new file created exclusively (O_EXCL, O_NOFOLLOW, 0600) in the
    same directory, which is then renamed over `path`. So an existing file, whatever its
    mode, is replaced rather than rewritten in place (it ends 0600), and a symlink at
    `path` is replaced itself: its target is never opened or changed.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, _NEW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the mode is exact, whatever the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def private_dir(path: Path) -> None:
    """Create `path` (and parents) if needed and make it 0700 (the state directory)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid():
        path.chmod(0o700)


def private_db_file(path: Path) -> None:
    """Make an SQLite database 0600 before SQLite opens it.

    SQLite creates its -wal and -shm files with the database file's permissions, so a
    database created 0600 here keeps all three owner-only; existing files are tightened.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, _NEW, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if not file.is_symlink() and file.stat().st_uid == os.geteuid():
                file.chmod(0o600)
