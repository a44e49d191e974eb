"""Start-up failures as one line naming the setting and its value (docs/settings.md).

`provisioner serve` used to die with a 40-line traceback when a port was taken. Every
part that can fail at start-up for a reason the operator controls raises `StartupError`
at the point of failure (where the listener is bound, the state directory is prepared,
the database is first reached), naming the setting and the value in effect, e.g.
`http.listen 127.0.0.1:18080: address already in use`. `provisioner serve` prints it as
`error: ...` and exits with `EXIT_STATUS`; the daemon's exit stack has already closed
whatever was started before the failure.

`HeldLogs` keeps the daemon's log lines in memory until it is ready, so a failed start
prints the one error line and nothing else (at `log_level = "debug"` the held lines are
printed too, before the error).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "EXIT_STATUS",
    "HeldLogs",
    "StartupError",
    "binding",
    "check_tcp_bindable",
    "os_problem",
    "prepare_state_dir",
]

EXIT_STATUS = 2
"""`provisioner serve`'s exit status for a start-up failure (as for a bad settings file)."""

_HELD_MAX = 10_000

# What each errno means for the one who wrote the setting (errno(3) words are for C).
_PROBLEMS = {
    errno.EADDRINUSE: "address already in use",
    errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
    errno.EADDRNOTAVAIL: "no interface on this host has this address",
    errno.ENODEV: "no such network interface",
    errno.ECONNREFUSED: "connection refused",
    errno.ETIMEDOUT: "no answer (connection timed out)",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ENOTDIR: "a path component is not a directory",
    errno.EEXIST: "exists and is not a directory",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EPERM: "operation not permitted",
}


class StartupError(Exception):
    """The daemon cannot start because of a setting: `str()` is `setting value: problem`."""

    def __init__(self, setting: str, value: object, problem: str) -> None:
        """`setting` as in the settings file (`http.listen`), `value` the one in effect."""
        self.setting = setting
        self.value = value
        self.problem = " ".join(problem.split())  # one line, whatever the cause said
        super().__init__(f"{setting} {value}: {self.problem}")


def os_problem(exc: OSError) -> str:
    """An OSError in the operator's words (no errno numbers, no Python class names)."""
    if exc.errno in _PROBLEMS:
        return _PROBLEMS[exc.errno]
    return exc.strerror or str(exc) or type(exc).__name__


@contextlib.contextmanager
def binding(setting: str, value: object) -> Iterator[None]:
    """Turn an OSError raised while binding into a `StartupError` for `setting value`."""
    try:
        yield
    except OSError as exc:
        raise StartupError(setting, value, os_problem(exc)) from exc


def check_tcp_bindable(setting: str, value: str, host: str, port: int) -> None:
    """Bind (and release) `host:port` to learn now whether a listener could take it.

    For servers whose own bind error is unreadable (gRPC prints to stderr from C and raises
    a bare RuntimeError). SO_REUSEADDR as servers set it, so a port in TIME_WAIT passes.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock, binding(setting, value):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))


def prepare_state_dir(path: Path) -> None:
    """Create the state directory if needed and prove it writable, or raise StartupError.

    Root passes permission checks, so the probe writes a real file: that still fails on
    a path under a regular file, a read-only mount or a full disk.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise StartupError("state_dir", path, "exists and is not a directory")
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise StartupError("state_dir", path, f"not usable: {os_problem(exc)}{where}") from exc


class HeldLogs(logging.Handler):
    """Hold the root logger's records until `pass_held()`; `drop_held()` drops them.

    Installed in front of the handlers `setup_logging` made; both calls put those back.
    (Not `release`/`flush`: those are `logging.Handler`'s lock and buffer methods.)
    """

    def __init__(self) -> None:
        """Take the root logger's handlers' place."""
        super().__init__(logging.NOTSET)
        self._root = logging.getLogger()
        self._targets = list(self._root.handlers)
        self._held: collections.deque[logging.LogRecord] = collections.deque(maxlen=_HELD_MAX)
        self._root.handlers[:] = [self]
        self._done = False

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record for later."""
        self._held.append(record)

    def pass_held(self) -> None:
        """Write every held record to the real handlers, then log straight to them."""
        if self._done:
            return
        self._done = True
        self._root.handlers[:] = self._targets
        while self._held:
            record = self._held.popleft()
            for handler in self._targets:
                if record.levelno >= handler.level:
                    handler.handle(record)

    def drop_held(self) -> None:
        """Drop the held records; later records go straight to the real handlers."""
        self._held.clear()
        self.pass_held()
