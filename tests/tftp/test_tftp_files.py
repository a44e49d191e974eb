"""The file source: allow-list, traversal, symlinks, provider (docs/threats.md B1, B4, B13)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from provisioner.settings import TftpSettings
from provisioner.tftp.codec import ErrorCode
from provisioner.tftp.files import (
    DEBIAN_IPXE_DIR,
    READ_AHEAD,
    READ_WHOLE_MAX,
    FileRefused,
    FileSource,
    OpenedFile,
    PreadBuffer,
)

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "root"
    base.mkdir()
    (base / "undionly.kpxe").write_bytes(b"U" * 100)
    (base / "ipxe.efi").write_bytes(b"E" * 10)
    (base / "notes.txt").write_bytes(b"not allow-listed")
    (base / "sub").mkdir()
    (base / "sub" / "x.efi").write_bytes(b"sub")
    (base / "out.efi").symlink_to("/etc/passwd")
    (base / "etc.efi").symlink_to("/etc")
    (base / "inside.efi").symlink_to(base / "ipxe.efi")
    (base / "dir.efi").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "boot.efi").write_bytes(b"B")
    (base / "linked.efi").symlink_to(tmp_path / "elsewhere" / "boot.efi")
    return base


def _read(result: OpenedFile | FileRefused) -> bytes:
    assert isinstance(result, OpenedFile), result
    data = bytes(result.data[0 : result.size])
    result.close()
    return data


def test_serves_allow_listed_files(root: Path):
    files = FileSource(root)
    assert _read(files.open("undionly.kpxe", "10.0.0.1")) == b"U" * 100
    assert _read(files.open("/ipxe.efi", "10.0.0.1")) == b"E" * 10
    assert _read(files.open(f"{root}/ipxe.efi", "10.0.0.1")) == b"E" * 10
    assert _read(files.open("inside.efi", "10.0.0.1")) == b"E" * 10


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../../etc/passwd", "traversal"),
        ("/etc/passwd", "traversal"),
        ("a/../../etc/passwd", "traversal"),
        ("..\\..\\x", "traversal"),
        ("..", "traversal"),
        ("/", "traversal"),
        ("sub/x.efi", "traversal"),
        ("../aa:bb:cc:dd:ee:ff/undionly.kpxe", "traversal"),  # B13
        ("aa-bb-cc-dd-ee-ff/undionly.kpxe", "traversal"),
        ("ipxe.efi\x00../x", "bad_name"),
        ("ipxe\n.efi", "bad_name"),
        ("", "bad_name"),
        ("a" * 256 + ".efi", "bad_name"),  # B4
        ("out.efi", "symlink_out"),
        ("etc.efi", "symlink_out"),
        ("linked.efi", "symlink_out"),
        ("notes.txt", "not_found"),
        ("missing.efi", "not_found"),
        ("dir.efi", "not_found"),
    ],
)
def test_refusals(root: Path, name: str, reason: str):
    result = FileSource(root).open(name, "10.0.0.1")
    assert isinstance(result, FileRefused)
    assert result.reason == reason
    assert result.code in (ErrorCode.FILE_NOT_FOUND, ErrorCode.ACCESS_VIOLATION)
    assert result.suspicious == (reason in {"traversal", "symlink_out", "bad_name"})


def test_link_dirs_allow_trusted_symlink_targets(root: Path):
    files = FileSource(root, link_dirs=[root.parent / "elsewhere"])
    assert _read(files.open("linked.efi", "10.0.0.1")) == b"B"
    refused = files.open("out.efi", "10.0.0.1")
    assert isinstance(refused, FileRefused)


def test_provider_gets_checked_names_and_client(root: Path):
    calls: list[tuple[str, str]] = []

    def provider(name: str, client: str) -> bytes | None:
        calls.append((name, client))
        return b"#!ipxe\n" if name == "boot.ipxe" else None

    files = FileSource(root, provider=provider)
    assert _read(files.open("/boot.ipxe", "10.0.0.9")) == b"#!ipxe\n"
    assert isinstance(files.open("../boot.ipxe", "10.0.0.9"), FileRefused)
    assert _read(files.open("ipxe.efi", "10.0.0.9")) == b"E" * 10
    assert calls == [("boot.ipxe", "10.0.0.9"), ("ipxe.efi", "10.0.0.9")]


def test_large_files_read_per_block(root: Path):
    big = root / "big.efi"
    big.write_bytes(os.urandom(1024) * (READ_WHOLE_MAX // 1024 + 1))
    result = FileSource(root).open("big.efi", "10.0.0.1")
    assert isinstance(result, OpenedFile)
    assert isinstance(result.data, PreadBuffer)
    assert result.data[5:9] == big.read_bytes()[5:9]
    assert result.data[result.size - 2 : result.size + 100] == big.read_bytes()[-2:]
    result.close()
    result.close()  # idempotent


def _counting_pread(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record (length, offset) of every real os.pread the file source makes."""
    calls: list[tuple[int, int]] = []
    real = os.pread

    def pread(fd: int, length: int, offset: int) -> bytes:
        calls.append((length, offset))
        return real(fd, length, offset)

    monkeypatch.setattr(os, "pread", pread)
    return calls


def test_large_files_are_read_ahead(root: Path, monkeypatch: pytest.MonkeyPatch):
    content = os.urandom(3 * READ_AHEAD + 100)
    (root / "big.efi").write_bytes(content)
    fd = os.open(root / "big.efi", os.O_RDONLY)
    buffer = PreadBuffer(fd, len(content))
    calls = _counting_pread(monkeypatch)
    blocks = [buffer[i : i + 512] for i in range(0, len(content) + 512, 512)]
    assert b"".join(blocks) == content
    assert blocks[-1] == b""  # past the end: empty, no read
    # One pread per READ_AHEAD bytes instead of one per block.
    assert calls == [(READ_AHEAD, i * READ_AHEAD) for i in range(3)] + [(100, 3 * READ_AHEAD)]
    # A retransmission from before the current chunk reads again from there.
    assert buffer[1000:1512] == content[1000:1512]
    assert calls[-1] == (READ_AHEAD, 1000)
    # A block straddling the chunk's end triggers a read starting at that block.
    edge = 1000 + READ_AHEAD - 10
    assert buffer[edge : edge + 512] == content[edge : edge + 512]
    assert calls[-1] == (READ_AHEAD, edge)
    # A block larger than READ_AHEAD is read whole.
    assert buffer[0 : READ_AHEAD + 1] == content[: READ_AHEAD + 1]
    assert calls[-1] == (READ_AHEAD + 1, 0)
    buffer.close()


def test_large_file_truncated_while_served_gives_short_blocks(root: Path):
    path = root / "big.efi"
    path.write_bytes(b"A" * (2 * READ_AHEAD))
    fd = os.open(path, os.O_RDONLY)
    buffer = PreadBuffer(fd, 2 * READ_AHEAD)
    assert buffer[0:512] == b"A" * 512
    os.truncate(path, READ_AHEAD + 100)  # shrinks under the open descriptor
    assert buffer[READ_AHEAD : READ_AHEAD + 512] == b"A" * 100  # short: the transfer ends
    assert buffer[READ_AHEAD + 512 : READ_AHEAD + 1024] == b""
    assert len(buffer) == 2 * READ_AHEAD  # the size seen at open
    buffer.close()


def test_nothing_is_written(root: Path):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in root.iterdir() if not p.is_symlink())
    files = FileSource(root)
    for name in ("new.efi", "../new.efi", "/tmp/new.efi"):
        files.open(name, "10.0.0.1")
    after = sorted((p.name, p.stat().st_mtime_ns) for p in root.iterdir() if not p.is_symlink())
    assert before == after


def test_from_settings_trusts_boot_only_for_debian_dir(tmp_path: Path):
    stock = FileSource.from_settings(TftpSettings())
    assert stock.root == DEBIAN_IPXE_DIR.resolve()
    if (DEBIAN_IPXE_DIR / "ipxe.efi").is_symlink():
        # Debian 12 links ipxe.efi to /boot/ipxe.efi: served from the stock directory...
        assert isinstance(stock.open("ipxe.efi", "10.0.0.1"), OpenedFile)
    other = tmp_path / "ipxe"
    other.mkdir()
    (other / "ipxe.efi").symlink_to("/boot/ipxe.efi")
    # ...but the same link elsewhere is refused.
    custom = FileSource.from_settings(TftpSettings(ipxe_dir=other))
    assert isinstance(custom.open("ipxe.efi", "10.0.0.1"), FileRefused)


def test_small_files_are_shared_and_refreshed_on_change(root: Path):
    files = FileSource(root)
    first = files.open("undionly.kpxe", "10.0.0.1")
    second = files.open("/undionly.kpxe", "10.0.0.2")
    assert isinstance(first, OpenedFile)
    assert isinstance(second, OpenedFile)
    assert first.data is second.data  # one copy for a boot storm, not one per client
    (root / "undionly.kpxe").write_bytes(b"new content")
    assert _read(files.open("undionly.kpxe", "10.0.0.1")) == b"new content"


def test_cache_budget_evicts_oldest(root: Path):
    (root / "a.efi").write_bytes(b"a" * 60)
    (root / "b.efi").write_bytes(b"b" * 60)
    files = FileSource(root, cache_bytes=100)
    a1 = files.open("a.efi", "10.0.0.1")
    files.open("b.efi", "10.0.0.1")  # 120 bytes > 100: a.efi is evicted
    a2 = files.open("a.efi", "10.0.0.1")
    assert isinstance(a1, OpenedFile)
    assert isinstance(a2, OpenedFile)
    assert a1.data == a2.data
    assert a1.data is not a2.data
    tiny = FileSource(root, cache_bytes=10)
    c1, c2 = tiny.open("a.efi", "x"), tiny.open("a.efi", "x")
    assert isinstance(c1, OpenedFile)
    assert isinstance(c2, OpenedFile)
    assert c1.data is not c2.data  # larger than the whole budget: never cached
