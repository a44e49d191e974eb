"""Boot assets: serving (Range, HEAD, ETag/304, traversal), a 50-client storm, and import."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp
import pytest
from webenv import Env, add_asset_set, add_cluster, add_machine

from provisioner.store.assets import AssetError, AssetInUseError


async def curl(*args: str) -> bytes:
    """curl in a subprocess without blocking the loop the server runs on."""
    proc = await asyncio.create_subprocess_exec("curl", "-s", *args, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out


async def test_get_head_range_etag(env: Env, http: aiohttp.ClientSession) -> None:
    kernel, initramfs = await add_asset_set(env, size=100_000)
    url = env.base + "/assets/talos/kernel"
    async with http.get(url) as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == str(len(kernel))
        assert await r.read() == kernel
        etag = r.headers["ETag"]
    async with http.get(env.base + "/assets/talos/initramfs") as r:
        assert await r.read() == initramfs
    async with http.head(url) as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == str(len(kernel))
        assert await r.read() == b""
    async with http.get(url, headers={"Range": "bytes=1000-1999"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(kernel)}"
        assert r.headers["Content-Length"] == "1000"
        assert await r.read() == kernel[1000:2000]
    async with http.get(url, headers={"Range": "bytes=-10"}) as r:
        assert r.status == 206
        assert await r.read() == kernel[-10:]
    async with http.get(url, headers={"Range": f"bytes={len(kernel) + 5}-"}) as r:
        assert r.status == 416
    async with http.get(url, headers={"If-None-Match": etag}) as r:
        assert r.status == 304
        assert await r.read() == b""


async def test_curl_range_and_head(env: Env) -> None:
    kernel, _ = await add_asset_set(env, size=50_000)
    url = env.base + "/assets/talos/kernel"
    head = (await curl("-I", url)).decode()
    assert "200 OK" in head.splitlines()[0]
    assert f"Content-Length: {len(kernel)}" in head
    part = await curl("-r", "10-19", url)
    assert part == kernel[10:20]
    full = await curl(url)
    assert full == kernel


@pytest.mark.parametrize(
    "path",
    [
        "/assets/../api-token",
        "/assets/%2e%2e/%2e%2e/api-token",
        "/assets/talos/..%2f..%2fapi-token",
        "/assets/talos/api-token",
        "/assets/talos/kernel%00",
        "/assets/..%2f..%2fetc/passwd",
        "/assets/.talos.staging/kernel",
        "/assets/Talos/kernel",
        "/assets/talos/.%2e/.%2e/api-token",
    ],
)
async def test_path_traversal_refused(env: Env, path: str) -> None:
    await add_asset_set(env)
    (env.state_dir / "api-token").write_text("secret-token\n")
    out = await curl("--path-as-is", "-o", "-", "-w", "\n%{http_code}", env.base + path)
    body, _, code = out.rpartition(b"\n")
    assert code in (b"404", b"400"), (path, code)
    assert b"secret-token" not in body


async def test_symlink_out_of_asset_dir_refused(env: Env, http: aiohttp.ClientSession) -> None:
    await add_asset_set(env)
    kernel = env.state_dir / "assets" / "talos" / "kernel"
    kernel.unlink()
    (env.state_dir / "outside").write_text("outside secret")
    kernel.symlink_to(env.state_dir / "outside")
    async with http.get(env.base + "/assets/talos/kernel") as r:
        assert r.status == 404


@pytest.mark.slow
async def test_fifty_concurrent_downloads_of_64mib(env: Env) -> None:
    src = env.state_dir / "big"
    src.mkdir()
    block = os.urandom(1 << 20)
    with (src / "k").open("wb") as out:
        for i in range(64):
            out.write(block[i:] + block[:i])
    (src / "i").write_bytes(b"x" * 1000)
    record = await env.app_ctx.assets.add("big", src / "k", src / "i")

    async def one(session: aiohttp.ClientSession) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        async with session.get(env.base + "/assets/big/kernel") as r:
            assert r.status == 200
            async for chunk in r.content.iter_chunked(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    connector = aiohttp.TCPConnector(limit=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=240)
    ) as session:
        results = await asyncio.gather(*(one(session) for _ in range(50)))
    assert results == [(record.kernel_sha256, 64 << 20)] * 50


async def test_asset_in_use_cannot_be_deleted(env: Env, http: aiohttp.ClientSession) -> None:
    await add_asset_set(env)
    await add_asset_set(env, "other")
    await add_cluster(env.store, asset_set="talos")
    await add_machine(env.store, "m1", ["52:54:00:00:00:01"], spec={"assetSet": "other"})
    for name, user in (("talos", "cluster:c1"), ("other", "machine:m1")):
        with pytest.raises(AssetInUseError, match=user):
            await env.app_ctx.assets.delete(name)
        async with http.delete(f"{env.api}/api/v1/assets/{name}", headers=env.auth()) as r:
            assert r.status == 409
    async with http.get(f"{env.api}/api/v1/assets/talos", headers=env.auth()) as r:
        assert (await r.json())["used_by"] == ["cluster:c1"]
    assert (env.state_dir / "assets" / "talos" / "kernel").is_file()


async def test_delete_unused_asset(env: Env, http: aiohttp.ClientSession) -> None:
    await add_asset_set(env)
    async with http.delete(f"{env.api}/api/v1/assets/talos", headers=env.auth()) as r:
        assert r.status == 204
    assert not (env.state_dir / "assets" / "talos").exists()
    async with http.get(env.base + "/assets/talos/kernel") as r:
        assert r.status == 404
    events = await env.store.list_events(kind="asset.deleted")
    assert events and events[0].actor == "api:admin"


async def test_import_checks_sha256_and_names(env: Env, tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"kernel")
    (tmp_path / "i").write_bytes(b"initramfs")
    good = hashlib.sha256(b"kernel").hexdigest()
    sets = env.app_ctx.assets
    with pytest.raises(AssetError, match="sha256 mismatch"):
        await sets.add("s1", tmp_path / "k", tmp_path / "i", kernel_sha256="0" * 64)
    assert await sets.get("s1") is None
    assert not (env.state_dir / "assets" / "s1").exists()
    rec = await sets.add("s1", tmp_path / "k", tmp_path / "i", kernel_sha256=good)
    assert rec.kernel_sha256 == good and rec.kernel_size == 6
    for bad in ("../x", "a/b", "", "A", ".hidden", "x" * 101):
        with pytest.raises(AssetError):
            await sets.add(bad, tmp_path / "k", tmp_path / "i")
    with pytest.raises(AssetError, match="exists"):
        await sets.add("s1", tmp_path / "k", tmp_path / "i")
