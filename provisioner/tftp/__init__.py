"""Read-only TFTP server for first-stage boot files (iPXE binaries, rendered scripts).

`codec` parses and builds packets, `options` negotiates RFC 2347 options, `transfer` is
the sans-I/O per-transfer state machine, `files` the allow-listed file source and
`server` the asyncio transport. See docs/tftp.md.
"""

from provisioner.tftp.files import FileRefused, FileSource, OpenedFile
from provisioner.tftp.server import TftpServer

__all__ = ["FileRefused", "FileSource", "OpenedFile", "TftpServer"]
