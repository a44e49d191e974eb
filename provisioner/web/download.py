"""Downloading boot assets: resumable HTTP(S) GETs with sha256, and Talos Image Factory URLs.

A download writes `<dest>.part`; if that file exists, the next attempt asks for the rest
with `Range: bytes=<size>-` and appends when the server answers 206 (a 200 means the
server ignored the range: start over). The digest is computed over the whole file once
it is complete, and a mismatch deletes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp

from provisioner.talos.schematic import SchematicError, schematic_id_of

__all__ = [
    "FACTORY_URL",
    "DownloadError",
    "download",
    "factory_urls",
    "is_url",
    "schematic_id",
]

FACTORY_URL = "https://factory.talos.dev"
CHUNK = 1 << 20
_SCHEMATIC_RE = re.compile(r"^[0-9a-f]{64}$")
_VERSION_RE = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.-]+)?$")

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None)."""


class DownloadError(Exception):
    """A download failed (HTTP status, checksum, network)."""


def is_url(text: str) -> bool:
    """Whether an asset source is a URL rather than a file path."""
    return text.startswith(("http://", "https://"))


def schematic_id(schematic: str) -> str:
    """A schematic ID as given, or the Image Factory ID of a schematic YAML file.

    The factory hashes its canonical marshalling of the schematic, not the file's bytes
    (provisioner.talos.schematic), so comments, indentation and key order do not matter;
    a schematic the factory would refuse (unknown key...) is an error naming file:line.
    """
    value = schematic.strip().lower()
    if _SCHEMATIC_RE.fullmatch(value):
        return value
    path = Path(schematic)
    if not path.is_file():
        msg = f"--schematic is neither a 64-hex schematic ID nor a file: {schematic!r}"
        raise DownloadError(msg)
    try:
        return schematic_id_of(path.read_text(encoding="utf-8"), str(path))
    except (SchematicError, UnicodeDecodeError) as exc:
        raise DownloadError(str(exc)) from None


def factory_urls(schematic: str, version: str, arch: str, base: str = FACTORY_URL) -> tuple[str, str]:
    """The kernel and initramfs URLs of a Talos Image Factory image."""
    if not _VERSION_RE.fullmatch(version):
        msg = f"not a Talos version: {version!r} (expected v1.13.0)"
        raise DownloadError(msg)
    tag = version if version.startswith("v") else f"v{version}"
    root = f"{base.rstrip('/')}/image/{schematic}/{tag}"
    return f"{root}/kernel-{arch}", f"{root}/initramfs-{arch}.xz"


async def download(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    progress: Progress | None = None,
    sha256: str | None = None,
) -> Path:
    """Fetch `url` into `dest`, resuming a previous partial download; returns `dest`."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        async with session.get(url, headers=headers) as resp:
            if resp.status == 416 and have:
                # Nothing left to fetch, or the file changed: the checksum decides below.
                total: int | None = have
            elif resp.status == 206 and have:
                total = have + (resp.content_length or 0) if resp.content_length is not None else None
                await _write(resp, part, "ab", have, total, progress)
            elif resp.status == 200:
                have = 0
                total = resp.content_length
                await _write(resp, part, "wb", 0, total, progress)
            else:
                msg = f"{url}: HTTP {resp.status} {resp.reason}"
                raise DownloadError(msg)
    except aiohttp.ClientError as exc:
        msg = f"{url}: {exc} (run again to resume)"
        raise DownloadError(msg) from exc
    size = part.stat().st_size
    if total is not None and size != total:
        msg = f"{url}: got {size} bytes, expected {total} (run again to resume)"
        raise DownloadError(msg)
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256.lower():
            part.unlink()
            msg = f"{url}: sha256 mismatch: expected {sha256.lower()}, got {digest}"
            raise DownloadError(msg)
    part.replace(dest)
    return dest


async def _write(
    resp: aiohttp.ClientResponse,
    part: Path,
    mode: str,
    have: int,
    total: int | None,
    progress: Progress | None,
) -> None:
    done = have
    with part.open(mode) as out:
        async for chunk in resp.content.iter_chunked(CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
