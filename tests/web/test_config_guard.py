"""Guarded config delivery: the legitimate fetch, and every misuse refused and recorded."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import aiohttp
import pytest
from sqlalchemy import update
from webenv import MAC1, MAC2, UUID1, UUID2, Env, add_asset_set, add_cluster, add_lease, add_machine, hexhyp

from provisioner import lifecycle
from provisioner.events import Severity, utcnow
from provisioner.lifecycle import Signal
from provisioner.store.records import ClusterRecord, MachineRecord
from provisioner.store.tables import ConfigTokenRow

CONFIG = b"version: v1alpha1\nmachine:\n  type: worker\n"


async def render(machine: MachineRecord, cluster: ClusterRecord) -> bytes:
    return CONFIG + f"# {machine.name} in {cluster.name}\n".encode()


async def setup(env: Env, *, renderer: bool = True) -> None:
    await add_asset_set(env)
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1], uuid=UUID1, state="PoweringOn")
    await add_machine(env.store, "m2", [MAC2], uuid=UUID2, state="PoweringOn")
    await env.refresh()
    if renderer:
        env.rt.renderer = render


async def token_for(http: aiohttp.ClientSession, env: Env, mac: str = MAC1) -> str:
    async with http.get(env.base + "/ipxe", params={"mac": hexhyp(mac)}) as r:
        text = await r.text()
    found = re.search(r"config\?t=([^&\s]+)", text)
    assert found is not None, text
    return found.group(1)


def talos_url(env: Env, token: str, *, mac: str = MAC1, uuid: str = UUID1) -> str:
    # What Talos sends after substituting ${uuid}/${mac}: url.Values.Encode() sorts the
    # keys and percent-encodes the values, so the MAC's colons arrive as %3A.
    return f"{env.base}/config?mac={quote(mac, safe='')}&t={token}&uuid={uuid}"


def refusals(env: Env) -> list[tuple[str, str]]:
    return [
        (str(e.data["reason"]), e.severity.value) for e in env.events.events if e.kind == "config.refused"
    ]


async def state(env: Env, name: str = "m1") -> str:
    machine = await env.store.get_machine(name)
    assert machine is not None
    return machine.state


async def test_legitimate_fetch_then_replay_alert(env_any: Env, http: aiohttp.ClientSession) -> None:
    env = env_any
    await setup(env)
    token = await token_for(http, env)
    assert await state(env) == "Netbooting"
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 200
        assert (await r.read()).startswith(CONFIG)
    assert await state(env) == "ConfigServed"
    kinds = [e.kind for e in await env.store.list_events(machine="m1")]
    assert "config.served" in kinds
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 403
        assert (await r.text()).strip() == "refused: token-replayed"
    assert refusals(env) == [("token-replayed", Severity.ALERT.value)]


async def test_double_encoded_mac_is_accepted(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    token = await token_for(http, env)
    url = f"{env.base}/config?mac={quote(quote(MAC1, safe=''), safe='')}&t={token}&uuid={UUID1}"
    async with http.get(url) as r:
        assert r.status == 200


async def test_unsubstituted_variables_are_not_a_mismatch(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    token = await token_for(http, env)
    async with http.get(f"{env.base}/config?t={token}&uuid=%24%7Buuid%7D&mac=%24%7Bmac%7D") as r:
        assert r.status == 200


@pytest.mark.parametrize("query", ["", "t=", "uuid=x", "t=" + "A" * 500, "t=%00%ff"])
async def test_no_or_bogus_token(env: Env, http: aiohttp.ClientSession, query: str) -> None:
    await setup(env)
    async with http.get(env.base + "/config?" + query) as r:
        assert r.status == 403
        body = await r.text()
    assert body.startswith("refused: ")
    assert "Traceback" not in body
    assert refusals(env)[0][0] in {"missing-token", "unknown-token"}


async def test_token_used_for_another_machine(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    token = await token_for(http, env, MAC1)
    async with http.get(talos_url(env, token, mac=MAC2, uuid=UUID2)) as r:
        assert r.status == 403
    assert refusals(env) == [("wrong-machine", "alert")]
    assert await state(env) == "Netbooting"


async def test_expired_token(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    token = await token_for(http, env)
    async with env.store.session() as session:
        await session.execute(update(ConfigTokenRow).values(expires_at=utcnow() - timedelta(seconds=1)))
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 403
    assert refusals(env) == [("token-expired", "warning")]


async def test_superseded_token_is_revoked(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    first = await token_for(http, env)
    second = await token_for(http, env)
    async with http.get(talos_url(env, first)) as r:
        assert r.status == 403
    async with http.get(talos_url(env, second)) as r:
        assert r.status == 200
    assert refusals(env) == [("token-revoked", "alert")]  # issue 14: a revoked token is an attack signal


async def test_from_another_address(env_any: Env, http: aiohttp.ClientSession) -> None:
    env = env_any
    await setup(env)
    token = await token_for(http, env)  # fetched from 127.0.0.1
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other) as from_other:
        async with from_other.get(talos_url(env, token)) as r:
            assert r.status == 403
        assert refusals(env) == [("wrong-source", "alert")]
        # The same address with the machine's bound lease (full DHCP mode) is allowed.
        await add_lease(env.store, "127.0.0.2", MAC1, "m1")
        async with from_other.get(talos_url(env, token)) as r:
            assert r.status == 200


async def test_lease_of_another_machine_does_not_help(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    token = await token_for(http, env)
    await add_lease(env.store, "127.0.0.3", MAC2, "m2")
    await add_lease(env.store, "127.0.0.4", MAC1, "m1", ttl_s=-10)  # expired lease
    for local in ("127.0.0.3", "127.0.0.4"):
        connector = aiohttp.TCPConnector(local_addr=(local, 0))
        async with aiohttp.ClientSession(connector=connector) as s, s.get(talos_url(env, token)) as r:
            assert r.status == 403
    assert [r for r, _ in refusals(env)] == ["wrong-source", "wrong-source"]


async def test_machine_not_provisioning(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    token = await token_for(http, env)
    # an operator's deprovision moved it out of the provisioning window after the script
    m1 = await env.store.get_machine("m1")
    assert m1 is not None
    assert await lifecycle.move(env.store, m1, Signal.DEPROVISION, "deprovision requested", now=utcnow())
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 403
    assert refusals(env) == [("not-provisioning", "warning")]


async def test_deleted_machine(env: Env, http: aiohttp.ClientSession) -> None:
    from sqlalchemy import delete

    from provisioner.store.tables import MachineRow

    await setup(env)
    token = await token_for(http, env)
    async with env.store.session() as session:
        await session.execute(delete(MachineRow).where(MachineRow.name == "m1"))
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 404
    assert refusals(env) == [("machine-unknown", "warning")]


async def test_renderer_absent_fails_machine(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env, renderer=False)
    token = await token_for(http, env)
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 503
    assert refusals(env) == [("renderer-unavailable", "warning")]
    machine = await env.store.get_machine("m1")
    assert machine is not None and machine.state == "Failed"
    assert "renderer-unavailable" in machine.state_reason


async def test_renderer_raising_fails_machine(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)

    async def broken(machine: MachineRecord, cluster: ClusterRecord) -> bytes:
        raise RuntimeError("secrets bundle missing")

    env.rt.renderer = broken
    token = await token_for(http, env)
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 503
        assert "secrets" not in await r.text()
    assert refusals(env) == [("renderer-failed", "warning")]
    assert await state(env) == "Failed"


async def test_renderer_refusal_fails_machine_with_its_reason(env: Env, http: aiohttp.ClientSession) -> None:
    """A config the renderer refuses (Talos would) is not served; the rule is the reason."""
    from provisioner.talos.render import ConfigRenderError

    await setup(env)
    rule = "machine.install: install.extraKernelArgs and install.grubUseUKICmdline can't be used together"

    async def refusing(machine: MachineRecord, cluster: ClusterRecord) -> bytes:
        raise ConfigRenderError(f"machine {machine.name}: generated config is invalid: {rule}")

    env.rt.renderer = refusing
    token = await token_for(http, env)
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 503
        assert "grubUseUKICmdline" not in await r.text()
    assert refusals(env) == [("renderer-failed", "warning")]
    machine = await env.store.get_machine("m1")
    assert machine is not None and machine.state == "Failed"
    assert rule in machine.state_reason


async def test_token_never_logged(
    env: Env, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    await setup(env)
    caplog.set_level(logging.INFO, logger="provisioner.web.access")
    token = await token_for(http, env)
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "provisioner.web.access"]
    assert any("/config?" in line and "t=REDACTED" in line for line in lines)
    assert all(token not in line for line in lines)


async def test_metrics_count_fetches_and_refusals(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    token = await token_for(http, env)
    for _ in range(2):
        async with http.get(talos_url(env, token)):
            pass
    async with http.get(env.api + "/metrics") as r:
        text = await r.text()
    assert 'provisioner_config_fetches_total{outcome="served"} 1.0' in text
    assert 'provisioner_config_refusals_total{reason="token-replayed"} 1.0' in text
    assert 'provisioner_machines{state="ConfigServed"}' in text


async def test_deprovision_revokes_tokens(env: Env, http: aiohttp.ClientSession) -> None:
    await setup(env)
    token = await token_for(http, env)
    async with http.post(f"{env.api}/api/v1/machines/m1/deprovision", headers=env.auth()) as r:
        assert r.status == 202
    async with http.get(talos_url(env, token)) as r:
        assert r.status == 403
    assert refusals(env) == [("token-revoked", "alert")]  # issue 14: a revoked token is an attack signal
