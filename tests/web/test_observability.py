"""/healthz, /metrics, /boot.ipxe over the wire, and the JSON access log."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest
from webenv import Env, start_env

from provisioner.store.repository import SqlStore


async def test_healthz_and_boot_script(env: Env, http: aiohttp.ClientSession) -> None:
    async with http.get(env.base + "/healthz") as r:
        assert r.status == 200
        assert (await r.json())["db"] == "ok"
    async with http.get(env.base + "/boot.ipxe") as r:
        assert r.status == 200
        text = await r.text()
    assert text.startswith("#!ipxe\n")
    assert f"chain --replace --autofree {env.base}/ipxe?mac=${{mac:hexhyp}}&nics=" in text


async def test_healthz_503_when_database_unreachable(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    broken = SqlStore.open("postgresql+asyncpg://postgres@127.0.0.1:1/none", tmp_path)
    broken_env = None
    try:
        broken_env = await _start_without_db(broken, tmp_path)
        async with http.get(broken_env.base + "/healthz") as r:
            assert r.status == 503
            assert await r.json() == {"status": "error", "db": "unreachable"}
        async with http.get(broken_env.base + "/boot.ipxe") as r:
            assert r.status == 200  # stage one needs no database
    finally:
        if broken_env is not None:
            await broken_env.server.stop()
        await broken.close()


async def _start_without_db(store: SqlStore, state_dir: Path) -> Env:
    original = store.list_machines

    async def empty() -> list:  # type: ignore[type-arg]
        return []

    store.list_machines = empty  # type: ignore[method-assign]
    try:
        return await start_env(store, state_dir)
    finally:
        store.list_machines = original  # type: ignore[method-assign]


async def test_metrics_render_service_counters_and_http(env: Env, http: aiohttp.ClientSession) -> None:
    env.rt.counter_sources["dhcp"] = lambda: {"received": 5, "dropped_malformed": 2}
    env.rt.counter_sources["tftp"] = lambda: {"transfers": 1}
    async with http.get(env.base + "/boot.ipxe"):
        pass
    async with http.get(env.base + "/nope"):
        pass
    async with http.get(env.api + "/metrics") as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    assert "provisioner_dhcp_received_total 5.0" in text
    assert "provisioner_dhcp_dropped_malformed_total 2.0" in text
    assert "provisioner_tftp_transfers_total 1.0" in text
    assert 'provisioner_http_requests_total{method="GET",route="/boot.ipxe",status="200"} 1.0' in text
    assert 'provisioner_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'provisioner_http_request_duration_seconds_bucket{le="0.005",route="/boot.ipxe"}' in text
    assert "# TYPE provisioner_machines gauge" in text


async def test_access_log_is_one_json_line(
    env: Env, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="provisioner.web.access")
    async with http.get(
        env.base + "/ipxe?mac=52-54-00-00-00-09&t=secret-ish", headers={"User-Agent": "iPXE/1.21"}
    ):
        pass
    (line,) = [r.getMessage() for r in caplog.records if r.name == "provisioner.web.access"]
    entry = json.loads(line)
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert entry["route"] == "/ipxe"
    assert entry["target"] == "/ipxe?mac=52-54-00-00-00-09&t=REDACTED"
    assert entry["agent"] == "iPXE/1.21"
    assert "secret-ish" not in line


async def test_method_label_is_bounded(env: Env, http: aiohttp.ClientSession) -> None:
    for method in ("PROPFIND", "MKCOL", "LOCK", "FOO"):
        async with http.request(method, env.base + "/boot.ipxe") as r:
            assert r.status in (400, 405)
    async with http.get(env.api + "/metrics") as r:
        text = await r.text()
    assert 'provisioner_http_requests_total{method="other",route="unmatched",status="405"} 3.0' in text
    for method in ("PROPFIND", "MKCOL", "LOCK", "FOO"):
        assert f'method="{method}"' not in text
