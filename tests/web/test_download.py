"""Asset downloads against a local aiohttp server: resume with Range, sha256, the CLI import."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from provisioner.web.download import DownloadError, download, factory_urls, schematic_id


class Origin:
    """A file server that can cut a response short once, and logs Range headers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ranges: list[str | None] = []
        self.cut_after: int | None = None
        self.base = ""

    async def files(self, request: web.Request) -> web.StreamResponse:
        self.ranges.append(request.headers.get("Range"))
        path = self.root / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound
        if self.cut_after is not None and "Range" not in request.headers:
            data = path.read_bytes()
            resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
            await resp.prepare(request)
            await resp.write(data[: self.cut_after])
            self.cut_after = None
            assert request.transport is not None
            request.transport.abort()
            return resp
        return web.FileResponse(path)


@pytest.fixture
async def origin(tmp_path: Path) -> AsyncIterator[Origin]:
    root = tmp_path / "origin"
    root.mkdir()
    org = Origin(root)
    app = web.Application()
    app.router.add_get("/image/{name}", org.files)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    org.base = f"http://127.0.0.1:{port}"
    try:
        yield org
    finally:
        await runner.cleanup()


def blob(origin: Origin, name: str, size: int) -> tuple[bytes, str]:
    data = os.urandom(size)
    (origin.root / name).write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


async def test_download_with_progress_and_sha(origin: Origin, tmp_path: Path) -> None:
    data, digest = blob(origin, "kernel", 3 << 20)
    seen: list[tuple[int, int | None]] = []
    async with aiohttp.ClientSession() as s:
        out = await download(
            s,
            f"{origin.base}/image/kernel",
            tmp_path / "k",
            sha256=digest,
            progress=lambda d, t: seen.append((d, t)),
        )
    assert out.read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert not (tmp_path / "k.part").exists()


async def test_interrupted_download_resumes_with_range(origin: Origin, tmp_path: Path) -> None:
    data, digest = blob(origin, "kernel", 4 << 20)
    origin.cut_after = 1 << 20
    async with aiohttp.ClientSession() as s:
        with pytest.raises(DownloadError, match="resume"):
            await download(s, f"{origin.base}/image/kernel", tmp_path / "k", sha256=digest)
        have = (tmp_path / "k.part").stat().st_size
        assert 0 < have < len(data)
        await download(s, f"{origin.base}/image/kernel", tmp_path / "k", sha256=digest)
    assert (tmp_path / "k").read_bytes() == data
    assert origin.ranges == [None, f"bytes={have}-"]


async def test_sha_mismatch_and_http_errors(origin: Origin, tmp_path: Path) -> None:
    blob(origin, "kernel", 1000)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(DownloadError, match="sha256 mismatch"):
            await download(s, f"{origin.base}/image/kernel", tmp_path / "k", sha256="0" * 64)
        assert not (tmp_path / "k.part").exists()
        assert not (tmp_path / "k").exists()
        with pytest.raises(DownloadError, match="404"):
            await download(s, f"{origin.base}/image/missing", tmp_path / "m")


def test_factory_urls_and_schematic(tmp_path: Path) -> None:
    default = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
    schematic = tmp_path / "schematic.yaml"
    schematic.write_text("customization: {}\n")
    assert schematic_id(str(schematic)) == default
    assert schematic_id(default.upper()) == default
    assert factory_urls(default, "1.13.0", "amd64") == (
        f"https://factory.talos.dev/image/{default}/v1.13.0/kernel-amd64",
        f"https://factory.talos.dev/image/{default}/v1.13.0/initramfs-amd64.xz",
    )
    with pytest.raises(DownloadError):
        factory_urls(default, "latest", "amd64")
    with pytest.raises(DownloadError):
        schematic_id("no-such-file")


def write_config(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    config = tmp_path / "p.toml"
    config.write_text(f'state_dir = "{state}"\n[http]\nlisten = "127.0.0.1:1"\n')
    return config


async def test_cli_import_list_delete(origin: Origin, tmp_path: Path) -> None:
    from provisioner.cli import cli

    kernel, k_sha = blob(origin, "kernel-amd64", 2 << 20)
    initramfs, i_sha = blob(origin, "initramfs-amd64.xz", 3 << 20)
    config = write_config(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    bad = await asyncio.to_thread(
        invoke,
        "assets",
        "import",
        "t1",
        "--kernel",
        f"{origin.base}/image/kernel-amd64",
        "--initramfs",
        f"{origin.base}/image/initramfs-amd64.xz",
        "--sha256",
        f"kernel={'0' * 64}",
    )
    assert bad.exit_code == 1
    assert "sha256 mismatch" in bad.output
    ok = await asyncio.to_thread(
        invoke,
        "assets",
        "import",
        "t1",
        "--kernel",
        f"{origin.base}/image/kernel-amd64",
        "--initramfs",
        f"{origin.base}/image/initramfs-amd64.xz",
        "--sha256",
        f"kernel={k_sha}",
        "--sha256",
        f"initramfs={i_sha}",
        "--cmdline",
        "talos.dashboard.disabled=1",
    )
    assert ok.exit_code == 0, ok.output
    stored = tmp_path / "state" / "assets" / "t1"
    assert (stored / "kernel").read_bytes() == kernel
    assert (stored / "initramfs").read_bytes() == initramfs
    listed = await asyncio.to_thread(invoke, "assets", "list", "--json")
    rows = json.loads(listed.output)
    assert [(r["name"], r["kernel_sha256"], r["initramfs_sha256"], r["cmdline"]) for r in rows] == [
        ("t1", k_sha, i_sha, "talos.dashboard.disabled=1")
    ]
    assert rows[0]["source"]["kernel"].endswith("/image/kernel-amd64")
    local = await asyncio.to_thread(
        invoke,
        "assets",
        "import",
        "t2",
        "--kernel",
        str(stored / "kernel"),
        "--initramfs",
        str(stored / "initramfs"),
        "--sha256",
        k_sha,
        "--sha256",
        i_sha,
    )
    assert local.exit_code == 0, local.output
    gone = await asyncio.to_thread(invoke, "assets", "delete", "t1")
    assert gone.exit_code == 0
    assert not stored.exists()
    missing = await asyncio.to_thread(invoke, "assets", "delete", "t1")
    assert missing.exit_code == 1
    traversal = await asyncio.to_thread(
        invoke, "assets", "import", "../x", "--kernel", "a", "--initramfs", "b"
    )
    assert traversal.exit_code == 2
