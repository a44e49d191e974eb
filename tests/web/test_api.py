"""The REST API: auth, machines, provision/deprovision audit, power, events, lists."""

from __future__ import annotations

import asyncio
import stat

import aiohttp
import pytest
from webenv import MAC1, MAC2, Env, FakePower, add_asset_set, add_cluster, add_lease, add_machine

from provisioner.events import Event, Severity, utcnow
from provisioner.web.auth import load_or_create_api_token

ROUTES = [
    ("GET", "/api/v1/machines"),
    ("GET", "/api/v1/machines/m1"),
    ("GET", "/api/v1/machines/m1/events"),
    ("POST", "/api/v1/machines/m1/provision"),
    ("POST", "/api/v1/machines/m1/deprovision"),
    ("POST", "/api/v1/machines/m1/reprovision"),
    ("POST", "/api/v1/machines/m1/release"),
    ("POST", "/api/v1/machines/m1/power"),
    ("GET", "/api/v1/clusters"),
    ("GET", "/api/v1/clusters/c1"),
    ("GET", "/api/v1/assets"),
    ("GET", "/api/v1/assets/talos"),
    ("DELETE", "/api/v1/assets/talos"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/leases"),
    ("GET", "/api/v1/discovered"),
]


async def seed(env: Env) -> None:
    await add_asset_set(env)
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1], uuid="11111111-2222-3333-4444-555555555501")
    await add_machine(env.store, "m2", [MAC2], state="Provisioned", installed=True)
    await env.refresh()


def test_api_token_created_0600(tmp_path) -> None:  # type: ignore[no-untyped-def]
    token = load_or_create_api_token(tmp_path)
    path = tmp_path / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 40
    assert load_or_create_api_token(tmp_path) == token


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": "Bearer"},
    ],
)
async def test_auth_enforced_everywhere(
    env: Env, http: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str]
) -> None:
    await seed(env)
    async with http.request(method, env.api + path, headers=headers, json={"action": "on"}) as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    # Nothing changed: the asset set is still there, no audit event was written.
    assert await env.app_ctx.assets.get("talos") is not None
    assert not [e for e in env.events.events if e.kind == "api.change"]


async def test_openapi_is_public(env: Env, http: aiohttp.ClientSession) -> None:
    async with http.get(env.api + "/api/v1/openapi.json") as r:
        assert r.status == 200
        doc = await r.json()
    assert set(doc["paths"]) == {
        p for _, p in ROUTES if "m1" not in p and "c1" not in p and "talos" not in p
    } | {
        "/api/v1/machines/{name}",
        "/api/v1/machines/{name}/events",
        "/api/v1/machines/{name}/logs",
        "/api/v1/machines/{name}/logs/stream",
        "/api/v1/machines/{name}/provision",
        "/api/v1/machines/{name}/deprovision",
        "/api/v1/machines/{name}/reprovision",
        "/api/v1/machines/{name}/release",
        "/api/v1/machines/{name}/power",
        "/api/v1/clusters/{name}",
        "/api/v1/assets/{name}",
    }


async def test_machines_list_show_filter(env: Env, http: aiohttp.ClientSession) -> None:
    await seed(env)
    async with http.get(env.api + "/api/v1/machines", headers=env.auth()) as r:
        items = (await r.json())["items"]
    assert [m["name"] for m in items] == ["m1", "m2"]
    assert items[0]["macs"] == [MAC1]
    async with http.get(env.api + "/api/v1/machines?state=Provisioned", headers=env.auth()) as r:
        assert [m["name"] for m in (await r.json())["items"]] == ["m2"]
    async with http.get(env.api + "/api/v1/machines?state=Bogus", headers=env.auth()) as r:
        assert r.status == 400
        assert (await r.json())["error"] == "Bad Request"
    async with http.get(env.api + "/api/v1/machines/m1", headers=env.auth()) as r:
        assert (await r.json())["uuid"] == "11111111-2222-3333-4444-555555555501"
    async with http.get(env.api + "/api/v1/machines/nope", headers=env.auth()) as r:
        assert r.status == 404
        assert (await r.json()) == {"error": "Not Found", "detail": "no such machine"}


async def test_provision_and_deprovision_are_audited(env: Env, http: aiohttp.ClientSession) -> None:
    await seed(env)
    async with http.post(env.api + "/api/v1/machines/m1/provision", headers=env.auth()) as r:
        assert r.status == 202
        assert await r.json() == {"machine": "m1", "desired": "provisioned"}
    m1 = await env.store.get_machine("m1")
    assert m1 is not None and m1.desired == "provisioned"
    async with http.post(env.api + "/api/v1/machines/m1/deprovision", headers=env.auth(), json={}) as r:
        assert r.status == 202
    events = await env.store.list_events(machine="m1", kind="api.change")
    assert [(e.message, e.actor, e.data["source"]) for e in events] == [
        ("deprovision", "api:admin", "127.0.0.1"),
        ("provision", "api:admin", "127.0.0.1"),
    ]
    async with http.post(env.api + "/api/v1/machines/nope/provision", headers=env.auth()) as r:
        assert r.status == 404
    async with http.post(env.api + "/api/v1/machines/m1/provision", headers=env.auth(), json={"x": 1}) as r:
        assert r.status == 400


async def test_power_without_service_is_503(env: Env, http: aiohttp.ClientSession) -> None:
    await seed(env)
    async with http.post(
        env.api + "/api/v1/machines/m1/power", headers=env.auth(), json={"action": "on"}
    ) as r:
        assert r.status == 503


async def test_power_actions(env: Env, http: aiohttp.ClientSession) -> None:
    await seed(env)
    power = FakePower({"m1", "m2"}, broken={"m2"})
    env.rt.power = power
    url = env.api + "/api/v1/machines/{}/power"
    async with http.post(url.format("m1"), headers=env.auth(), json={"action": "on"}) as r:
        assert r.status == 200
        assert await r.json() == {"machine": "m1", "action": "on", "result": {"power": "on"}}
    body = {"action": "bootdev", "device": "pxe", "persistent": True}
    async with http.post(url.format("m1"), headers=env.auth(), json=body) as r:
        assert r.status == 200
    assert power.bootdev["m1"] == ("pxe", True)
    for bad in (
        {"action": "explode"},
        {"action": "bootdev"},
        {"action": "on", "device": "pxe"},
        {"action": "on", "extra": 1},
        ["on"],
    ):
        async with http.post(url.format("m1"), headers=env.auth(), json=bad) as r:
            assert r.status == 400, bad
    async with http.post(
        url.format("m1"), headers={**env.auth(), "Content-Type": "application/json"}, data=b"{nope"
    ) as r:
        assert r.status == 400
    async with http.post(url.format("m2"), headers=env.auth(), json={"action": "off"}) as r:
        assert r.status == 502
        failure = await r.json()
    assert failure["reason"] == "bmc-unreachable"
    assert failure["bmc"] == "ipmi 192.0.2.1:623"
    assert failure["check"] == ["bmc.address", "bmc.port"]
    assert "no answer to IPMI session setup within 5.0 s" in failure["detail"]
    assert "check bmc.address, bmc.port of machine m2 in the inventory" in failure["detail"]
    async with http.post(url.format("zz"), headers=env.auth(), json={"action": "off"}) as r:
        assert r.status == 404
    audit = [(e.message, e.data.get("ok")) for e in env.events.events if e.kind == "api.change"]
    assert audit == [("power on", True), ("power bootdev", True), ("power off", False)]
    async with http.get(env.api + "/metrics") as r:
        text = await r.text()
    assert 'provisioner_power_calls_total{action="on"} 1.0' in text
    assert 'provisioner_power_failures_total{action="off"} 1.0' in text


async def test_power_service_bug_is_500_not_a_bmc_failure(env: Env, http: aiohttp.ClientSession) -> None:
    await seed(env)
    env.rt.power = FakePower({"m1"}, crashing={"m1"})
    async with http.post(
        env.api + "/api/v1/machines/m1/power", headers=env.auth(), json={"action": "status"}
    ) as r:
        assert r.status == 500
        body = await r.json()
    assert body["reason"] == "power-internal"
    assert "TimeoutError" in body["detail"]


async def test_events_filter_and_pages(env: Env, http: aiohttp.ClientSession) -> None:
    await seed(env)
    now = utcnow()
    await env.store.append_events(
        [
            Event(kind=f"dhcp.{'ack' if i % 2 else 'offer'}", at=now, machine="m1", data={"i": i})
            for i in range(25)
        ]
        + [Event(kind="config.refused", at=now, machine="m2", severity=Severity.ALERT)]
    )
    seen: list[int] = []
    before = None
    while True:
        params = {"kind": "dhcp.", "limit": "10", **({"before": str(before)} if before else {})}
        async with http.get(env.api + "/api/v1/events", headers=env.auth(), params=params) as r:
            page = await r.json()
        seen += [e["data"]["i"] for e in page["items"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == list(range(24, -1, -1))
    async with http.get(env.api + "/api/v1/events?severity=alert", headers=env.auth()) as r:
        assert [e["machine"] for e in (await r.json())["items"]] == ["m2"]
    async with http.get(env.api + "/api/v1/machines/m1/events?limit=3", headers=env.auth()) as r:
        assert len((await r.json())["items"]) == 3
    for bad in ("limit=0", "limit=x", "severity=loud", "since=yesterday", "before=-1", "machine=a%20b"):
        async with http.get(env.api + "/api/v1/events?" + bad, headers=env.auth()) as r:
            assert r.status == 400, bad
    async with http.get(env.api + "/api/v1/events?since=2999-01-01T00:00:00Z", headers=env.auth()) as r:
        assert (await r.json())["items"] == []


async def test_clusters_leases_discovered(env: Env, http: aiohttp.ClientSession) -> None:
    await seed(env)
    await add_lease(env.store, "10.77.0.100", MAC1, "m1")
    await env.store.record_discovered("52:54:00:99:99:99", source="dhcp")
    async with http.get(env.api + "/api/v1/clusters/c1", headers=env.auth()) as r:
        cluster = await r.json()
    assert cluster["asset_set"] == "talos"
    assert "secrets" not in cluster and cluster["has_secrets"] is False
    async with http.get(env.api + "/api/v1/leases", headers=env.auth()) as r:
        assert [(lease["ip"], lease["machine"]) for lease in (await r.json())["items"]] == [
            ("10.77.0.100", "m1")
        ]
    async with http.get(env.api + "/api/v1/discovered", headers=env.auth()) as r:
        assert [d["mac"] for d in (await r.json())["items"]] == ["52:54:00:99:99:99"]
    async with http.get(env.api + "/api/v1/assets", headers=env.auth()) as r:
        assert [a["name"] for a in (await r.json())["items"]] == ["talos"]


async def test_client_against_live_server(env: Env) -> None:
    import asyncio

    from provisioner.web.client import ApiClient, ApiError, DaemonUnreachableError

    await seed(env)
    env.rt.power = FakePower({"m1", "m2"})
    client = ApiClient(env.api, "test-api-token-0123456789")

    def calls() -> None:
        assert [m["name"] for m in client.machines()] == ["m1", "m2"]
        assert client.machine("m1")["name"] == "m1"
        assert client.provision("m1") == {"machine": "m1", "desired": "provisioned"}
        assert client.power("m1", "bootdev", device="disk", persistent=False)["action"] == "bootdev"
        assert client.events(kind="api.change")["items"]
        with pytest.raises(ApiError) as err:
            client.machine("nope")
        assert err.value.status == 404
        with pytest.raises(ApiError) as err:
            ApiClient(env.api, "bad").machines()
        assert err.value.status == 401
        with pytest.raises(DaemonUnreachableError):
            ApiClient("http://127.0.0.1:1", "x", timeout=2).machines()

    await asyncio.to_thread(calls)


async def test_odd_path_spellings_never_bypass_auth(env: Env) -> None:
    await seed(env)
    for path in (
        "/api/v1//machines",
        "/api/v1/./machines",
        "/api/v1/x/../machines",
        "/api/v1/machines/",
        "/api/v1/%6dachines",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", env.server.api_port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        status = (await reader.readline()).split()[1]
        body = await reader.read()
        writer.close()
        assert status in (b"401", b"404"), (path, status)
        assert b"macs" not in body, path
