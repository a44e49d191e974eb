"""docs/threats.md HTTP rows: oversized headers and bodies, idle and slowloris connections, aborted downloads."""

from __future__ import annotations

import asyncio
import resource
import time

import aiohttp
from webenv import API_TOKEN, Env, add_asset_set


async def raw_exchange(env: Env, data: bytes, *, timeout: float = 10) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def healthy(env: Env) -> bool:
    async with aiohttp.ClientSession() as s, s.get(env.base + "/healthz") as r:
        return r.status == 200


async def test_oversized_header_line_rejected(env: Env) -> None:
    answer = await raw_exchange(
        env, b"GET /boot.ipxe HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    )
    assert answer == b"" or answer.split(b" ", 2)[1] in (b"400", b"431")
    assert await healthy(env)


async def test_too_many_headers_rejected(env: Env) -> None:
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(500))
    answer = await raw_exchange(env, b"GET /boot.ipxe HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert answer.split(b" ", 2)[1] in (b"400", b"431")
    assert await healthy(env)


async def test_huge_body_to_get_route_and_api(env: Env, http: aiohttp.ClientSession) -> None:
    async def body():  # type: ignore[no-untyped-def]
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            yield chunk

    started = time.monotonic()
    try:
        async with http.post(env.base + "/boot.ipxe", data=body()) as r:
            assert r.status == 405
    except aiohttp.ClientError:
        pass  # the server may close the connection instead of reading 100 MB
    assert time.monotonic() - started < 20
    headers = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
    async with http.post(
        env.api + "/api/v1/machines/m1/power", data=b"{" + b" " * (1 << 20) + b"}", headers=headers
    ) as r:
        assert r.status == 413
    assert await healthy(env)


async def test_idle_and_slowloris_connections_are_bounded(env: Env) -> None:
    # env's idle timeout is 3 s (production: 15 s).
    idle = [await asyncio.open_connection("127.0.0.1", env.server.port) for _ in range(200)]
    reader, writer = await asyncio.open_connection("127.0.0.1", env.server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\n")

    async def trickle() -> None:
        for i in range(60):
            writer.write(b"X-%d: v\r\n" % i)
            await writer.drain()
            await asyncio.sleep(0.25)

    feeder = asyncio.create_task(trickle())
    assert await healthy(env)  # served while 201 connections hang around
    started = time.monotonic()
    closed = await asyncio.wait_for(asyncio.gather(*(r.read() for r, _ in [*idle, (reader, writer)])), 15)
    assert all(data == b"" for data in closed)
    assert time.monotonic() - started < 10
    feeder.cancel()
    for _, w in idle:
        w.close()
    writer.close()
    assert await healthy(env)


async def test_aborted_downloads_free_resources(env: Env) -> None:
    await add_asset_set(env, size=8 << 20)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    async def abort_midway() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", env.server.port)
        writer.write(b"GET /assets/talos/initramfs HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await reader.readexactly(256 * 1024)
        writer.transport.abort()

    await asyncio.gather(*(abort_midway() for _ in range(100)))
    async with aiohttp.ClientSession() as s, s.get(env.base + "/assets/talos/initramfs") as r:
        assert len(await r.read()) == 16 << 20
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 64 * 1024  # RSS does not scale with file size x clients
