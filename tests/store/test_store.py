"""Store behaviour on SQLite and on the real PostgreSQL server the suite starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from provisioner.events import Event, Severity, utcnow
from provisioner.inventory import apply_inventory, load_inventory
from provisioner.store.db import make_engine
from provisioner.store.migrate import current_revision, upgrade
from provisioner.store.repository import Store
from provisioner.store.tables import LeaseRow

INVENTORY = """
kind: Cluster
name: c1
talosVersion: v1.13.0
kubernetesVersion: 1.33.0
endpoint: https://10.0.0.10:6443
---
kind: Machine
name: m1
cluster: c1
role: controlplane
macs: [52:54:00:00:00:01, 52:54:00:00:01:01]
uuid: 00000000-0000-4000-8000-000000000001
ip: 10.0.0.11
bmc: {driver: ipmi, address: 127.0.0.1, port: 6230, username: admin, password: Sup3rSecretPw}
---
kind: Machine
name: m2
macs: [52:54:00:00:00:02]
"""


async def seed(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    inv = load_inventory([path])
    assert inv.ok, inv.problems
    await apply_inventory(store, inv)


async def test_machines_round_trip(store: Store, tmp_path: Path) -> None:
    await seed(store, tmp_path)
    machines = await store.list_machines()
    assert [m.name for m in machines] == ["m1", "m2"]
    m1 = await store.get_machine("m1")
    assert m1 is not None
    assert m1.macs == ("52:54:00:00:00:01", "52:54:00:00:01:01")
    assert m1.bmc is not None and m1.bmc.has_password and m1.bmc.password_ref == "inline"
    assert "Sup3rSecretPw" not in repr(m1)
    assert await store.bmc_password("m1") == "Sup3rSecretPw"
    assert await store.bmc_password("m2") is None
    assert m1.summary().hostname == "m1"
    assert await store.get_machine("nope") is None


async def test_transition_is_compare_and_set_with_event(store: Store, tmp_path: Path) -> None:
    await seed(store, tmp_path)
    ev = Event(kind="machine.transition", at=utcnow(), machine="m1", data={"to": "PoweringOn"})
    kw = {"expect": ["Registered"], "reason": "test", "event": ev, "fields": {}}
    assert await store.write_transition("m1", "PoweringOn", **kw)  # type: ignore[arg-type]
    # a second actor expecting the old state loses and writes nothing
    assert not await store.write_transition("m1", "PoweringOn", **kw)  # type: ignore[arg-type]
    assert (await store.get_machine("m1")).state == "PoweringOn"  # type: ignore[union-attr]
    events = await store.list_events(machine="m1", kind="machine.transition")
    assert len(events) == 1


async def test_state_is_not_a_plain_field(store: Store, tmp_path: Path) -> None:
    await seed(store, tmp_path)
    with pytest.raises(ValueError, match="lifecycle"):
        await store.update_machine("m1", state="Provisioned")
    assert (await store.get_machine("m1")).state == "Registered"  # type: ignore[union-attr]


async def test_events_filter_and_paginate(store: Store) -> None:
    now = utcnow()
    await store.append_events(
        [
            Event(kind=f"dhcp.{'ack' if i % 2 else 'offer'}", at=now, machine="m1" if i < 5 else None)
            for i in range(10)
        ]
        + [Event(kind="config.refused", at=now, severity=Severity.ALERT)]
    )
    assert await store.count_events() == 11
    page1 = await store.list_events(limit=4)
    page2 = await store.list_events(limit=4, before_id=page1[-1].id)
    assert len(page1) == 4 and len(page2) == 4
    assert page1[0].id > page1[-1].id > page2[0].id
    assert len(await store.list_events(kind="dhcp.", limit=100)) == 10
    assert len(await store.list_events(kind="dhcp.ack", limit=100)) == 5
    assert len(await store.list_events(machine="m1", limit=100)) == 5
    assert [e.kind for e in await store.list_events(severity="alert")] == ["config.refused"]


async def test_cluster_secrets_encrypted(store: Store, tmp_path: Path) -> None:
    await seed(store, tmp_path)
    assert await store.put_cluster_secrets("c1", b"cluster: {secret: abc}")
    assert await store.get_cluster_secrets("c1") == b"cluster: {secret: abc}"
    assert not await store.put_cluster_secrets("nope", b"x")
    cluster = await store.get_cluster("c1")
    assert cluster is not None and cluster.has_secrets


async def test_discovered_upsert(store: Store) -> None:
    await store.record_discovered("52:54:00:99:00:01", arch="x86_64-efi", source="dhcp")
    await store.record_discovered(
        "52:54:00:99:00:01", uuid="00000000-0000-4000-8000-000000000099", source="dhcp"
    )
    [row] = await store.list_discovered()
    assert row.seen_count == 2 and row.arch == "x86_64-efi" and row.uuid.endswith("99")  # type: ignore[union-attr]


async def test_lease_ip_is_unique_in_the_database(store: Store) -> None:
    """The constraint that keeps two instances from ACKing one address to two clients."""
    from sqlalchemy.exc import IntegrityError

    now = utcnow()
    async with store.session() as session:
        session.add(LeaseRow(ip="10.0.0.100", mac="52:54:00:00:00:01", expires_at=now, updated_at=now))
    with pytest.raises(IntegrityError):
        async with store.session() as session:
            session.add(LeaseRow(ip="10.0.0.100", mac="52:54:00:00:00:02", expires_at=now, updated_at=now))
    async with store.session() as session:
        rows = (await session.execute(select(LeaseRow))).scalars().all()
    assert [r.mac for r in rows] == ["52:54:00:00:00:01"]
    assert (await store.list_leases())[0]["ip"] == "10.0.0.100"


async def test_migrations_upgrade_empty_database(db_url: str, state_dir: Path) -> None:
    engine = make_engine(db_url)
    try:
        assert await current_revision(engine) is None
        await upgrade(engine)
        head = await current_revision(engine)
        assert head is not None
        await upgrade(engine)  # idempotent
        assert await current_revision(engine) == head
    finally:
        await engine.dispose()
    store = Store.open(db_url, state_dir)
    try:
        assert await store.list_machines() == []
    finally:
        await store.close()


async def test_migrations_match_the_models(db_url: str) -> None:
    """Alembic autogenerate finds nothing to do after upgrade: migrations and tables agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    engine = make_engine(db_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata
                )
            )
        assert diff == []
    finally:
        await engine.dispose()
