"""The Store contract: one suite run on MemoryStore, SQL on SQLite and SQL on PostgreSQL.

Tests taking `contract_store` run on all three; the few taking `store` are about the SQL
database itself (constraints, migrations) and run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from provisioner.events import Event, Severity, utcnow
from provisioner.inventory import apply_inventory, load_inventory
from provisioner.inventory.export import export_inventory
from provisioner.store.broken import BrokenStore, StoreUnavailableError
from provisioner.store.db import create_schema, make_engine
from provisioner.store.memory import MemoryStore
from provisioner.store.migrate import current_revision, upgrade
from provisioner.store.records import TokenRecord
from provisioner.store.repository import SqlStore, Store
from provisioner.store.tables import ConfigTokenRow, LeaseRow

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


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def contract_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Which implementation: "memory", or the database URL of the SQL store."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/provisioner.db"
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_database_url"))
    return "memory"


@pytest.fixture
async def contract_store(contract_url: str, state_dir: Path) -> AsyncIterator[Store]:
    """The same tests on every Store implementation."""
    if contract_url == "memory":
        yield MemoryStore()
        return
    sql = SqlStore.open(contract_url, state_dir)
    await create_schema(sql.engine)
    try:
        yield sql
    finally:
        await sql.close()


async def put_lease(
    store: Store,
    ip: str,
    mac: str,
    state: str = "bound",
    *,
    machine: str | None = None,
    expires_in_s: float = 0.0,
) -> None:
    """A lease row as the DHCP lease store writes it."""
    now = utcnow()
    expires = now + timedelta(seconds=expires_in_s)
    if isinstance(store, MemoryStore):
        store.leases[ip] = {
            "ip": ip,
            "mac": mac,
            "hostname": "",
            "state": state,
            "expires_at": expires.isoformat(),
            "machine": machine,
        }
        return
    assert isinstance(store, SqlStore)
    async with store.session() as session:
        session.add(
            LeaseRow(ip=ip, mac=mac, state=state, expires_at=expires, updated_at=now, machine=machine)
        )


async def put_token(store: Store, machine: str, issued_to: str, *, used_by: str = "") -> None:
    """A config token row as ConfigTokens writes it (issued now, valid for an hour)."""
    now = utcnow()
    used_at = now if used_by else None
    expires = now + timedelta(hours=1)
    if isinstance(store, MemoryStore):
        token_id = len(store.config_tokens) + 1
        store.config_tokens.append(
            TokenRecord(token_id, machine, now, expires, issued_to, used_at, used_by, revoked=False)
        )
        return
    assert isinstance(store, SqlStore)
    async with store.session() as session:
        session.add(
            ConfigTokenRow(
                token_hash=f"{machine}-{issued_to}".ljust(64, "0"),
                machine=machine,
                issued_at=now,
                expires_at=expires,
                issued_to=issued_to,
                used_at=used_at,
                used_by=used_by,
            )
        )


async def seed(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(INVENTORY)
    inv = load_inventory([path])
    assert inv.ok, inv.problems
    await apply_inventory(store, inv)


async def test_machines_round_trip(contract_store: Store, tmp_path: Path) -> None:
    store = contract_store
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


async def test_transition_is_compare_and_set_with_event(contract_store: Store, tmp_path: Path) -> None:
    store = contract_store
    await seed(store, tmp_path)
    ev = Event(kind="machine.transition", at=utcnow(), machine="m1", data={"to": "PoweringOn"})
    kw = {"expect": ["Registered"], "reason": "test", "event": ev, "fields": {}}
    assert await store.write_transition("m1", "PoweringOn", **kw)  # type: ignore[arg-type]
    # a second actor expecting the old state loses and writes nothing
    assert not await store.write_transition("m1", "PoweringOn", **kw)  # type: ignore[arg-type]
    assert (await store.get_machine("m1")).state == "PoweringOn"  # type: ignore[union-attr]
    events = await store.list_events(machine="m1", kind="machine.transition")
    assert len(events) == 1


async def test_state_is_not_a_plain_field(contract_store: Store, tmp_path: Path) -> None:
    store = contract_store
    await seed(store, tmp_path)
    with pytest.raises(ValueError, match="lifecycle"):
        await store.update_machine("m1", state="Provisioned")
    assert (await store.get_machine("m1")).state == "Registered"  # type: ignore[union-attr]


async def test_events_filter_and_paginate(contract_store: Store) -> None:
    store = contract_store
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


async def test_cluster_secrets_encrypted(contract_store: Store, tmp_path: Path) -> None:
    store = contract_store
    await seed(store, tmp_path)
    assert await store.put_cluster_secrets("c1", b"cluster: {secret: abc}")
    assert await store.get_cluster_secrets("c1") == b"cluster: {secret: abc}"
    assert not await store.put_cluster_secrets("nope", b"x")
    cluster = await store.get_cluster("c1")
    assert cluster is not None and cluster.has_secrets


async def test_discovered_upsert(contract_store: Store) -> None:
    store = contract_store
    await store.record_discovered("52:54:00:99:00:01", arch="x86_64-efi", source="dhcp")
    await store.record_discovered(
        "52:54:00:99:00:01", uuid="00000000-0000-4000-8000-000000000099", source="dhcp"
    )
    [row] = await store.list_discovered()
    assert row.seen_count == 2 and row.arch == "x86_64-efi" and row.uuid.endswith("99")  # type: ignore[union-attr]


async def test_discovered_table_is_capped_and_new_rows_reported(contract_store: Store) -> None:
    store = contract_store
    macs = [f"52:54:00:99:01:{i:02x}" for i in range(5)]
    assert [await store.record_discovered(mac, source="http", limit=3) for mac in macs] == [True] * 5
    assert not await store.record_discovered(macs[-1], source="http", limit=3)  # seen again
    assert sorted(r.mac for r in await store.list_discovered()) == macs[2:]


async def test_prune_events_by_age_and_count(contract_store: Store) -> None:
    store = contract_store
    now = utcnow()
    old = [Event(kind="old", at=now - timedelta(days=10)) for _ in range(3)]
    await store.append_events([*old, *(Event(kind=f"new{i}", at=now) for i in range(5))])
    assert await store.prune_events(before=now - timedelta(days=1), max_rows=3) == 5
    assert [e.kind for e in await store.list_events()] == ["new4", "new3", "new2"]


async def test_inventory_export_applies_with_no_changes(contract_store: Store, tmp_path: Path) -> None:
    store = contract_store
    await seed(store, tmp_path)
    text = await export_inventory(store)
    assert "Sup3rSecretPw" not in text
    again = tmp_path / "again.yaml"
    again.write_text(text)
    plan = await apply_inventory(store, load_inventory([again]))
    assert plan.empty, plan.changes


async def test_inventory_dry_run_and_swap(contract_store: Store, tmp_path: Path) -> None:
    store = contract_store
    await seed(store, tmp_path)
    swapped = INVENTORY.replace("52:54:00:00:00:02", "52:54:00:00:00:XX")
    swapped = swapped.replace(
        "[52:54:00:00:00:01, 52:54:00:00:01:01]", "[52:54:00:00:00:02, 52:54:00:00:01:01]"
    )
    swapped = swapped.replace("52:54:00:00:00:XX", "52:54:00:00:00:01")
    path = tmp_path / "swap.yaml"
    path.write_text(swapped)
    dry = await apply_inventory(store, load_inventory([path]), dry_run=True)
    assert dry.counts() == {"added": 0, "changed": 2, "removed": 0}
    assert (await store.get_machine("m1")).macs[0] == "52:54:00:00:00:01"  # type: ignore[union-attr]
    plan = await apply_inventory(store, load_inventory([path]))
    assert plan.counts() == dry.counts()
    assert (await store.get_machine("m1")).macs == ("52:54:00:00:00:02", "52:54:00:00:01:01")  # type: ignore[union-attr]
    assert (await store.get_machine("m2")).macs == ("52:54:00:00:00:01",)  # type: ignore[union-attr]
    assert len(await store.list_events(kind="inventory.changed")) == 2
    # pruning removes what the files no longer list
    only_m2 = tmp_path / "m2.yaml"
    only_m2.write_text("kind: Machine\nname: m2\nmacs: [52:54:00:00:00:01]\n")
    pruned = await apply_inventory(store, load_inventory([only_m2]), prune=True)
    assert pruned.counts() == {"added": 0, "changed": 0, "removed": 2}
    assert [m.name for m in await store.list_machines()] == ["m2"]
    assert await store.list_clusters() == []


async def test_claims_and_plain_fields(contract_store: Store, tmp_path: Path) -> None:
    store = contract_store
    await seed(store, tmp_path)
    assert await store.claim("m1", "one", stale_after_s=60)
    assert await store.claim("m1", "one", stale_after_s=60)  # renewing is fine
    assert not await store.claim("m1", "two", stale_after_s=60)
    assert await store.claim("m1", "two", stale_after_s=-1)  # a stale claim is taken over
    assert (await store.get_machine("m1")).owner == "two"  # type: ignore[union-attr]
    assert not await store.claim("nope", "one", stale_after_s=60)
    ev = Event(kind="machine.gave_up", at=utcnow(), machine="m1")
    assert await store.update_machine("m1", desired="provisioned", attempts=2, event=ev)
    m1 = await store.get_machine("m1")
    assert m1 is not None and (m1.desired, m1.attempts) == ("provisioned", 2)
    assert [e.kind for e in await store.list_events(machine="m1")] == ["machine.gave_up", "inventory.added"]
    assert not await store.update_machine("nope", desired="provisioned")


async def test_leased_addresses_are_bound_unexpired_and_attributed(contract_store: Store) -> None:
    # telemetry's source attribution (telemetry/service.py): only a live lease names a node
    store = contract_store
    await put_lease(store, "10.0.0.100", "52:54:00:00:00:01", machine="m1", expires_in_s=600)
    await put_lease(store, "10.0.0.101", "52:54:00:00:00:02", machine="m2", expires_in_s=-600)
    await put_lease(store, "10.0.0.102", "52:54:00:00:00:03", "offered", machine="m3", expires_in_s=600)
    await put_lease(store, "10.0.0.103", "52:54:00:00:00:04", expires_in_s=600)  # no machine
    await put_lease(store, "10.0.0.104", "52:54:00:00:00:05", "released", machine="m5", expires_in_s=600)
    assert await store.leased_addresses(now=utcnow()) == {"10.0.0.100": "m1"}
    assert await store.leased_addresses(now=utcnow() + timedelta(seconds=601)) == {}


async def test_release_machine_releases_only_its_held_leases(contract_store: Store) -> None:
    store = contract_store
    await put_lease(store, "10.0.0.100", "52:54:00:00:00:01")
    await put_lease(store, "10.0.0.101", "52:54:00:00:01:01", state="offered")
    await put_lease(store, "10.0.0.102", "52:54:00:00:00:01", state="expired")
    await put_lease(store, "10.0.0.103", "52:54:00:00:00:02")
    assert await store.release_machine("m1", ["52:54:00:00:00:01", "52:54:00:00:01:01"]) == 2
    states = {lease["ip"]: lease["state"] for lease in await store.list_leases()}
    assert states == {
        "10.0.0.100": "released",
        "10.0.0.101": "released",
        "10.0.0.102": "expired",
        "10.0.0.103": "bound",
    }


async def test_feed_reports_machines_changed_since_a_mark(contract_store: Store, tmp_path: Path) -> None:
    store = contract_store
    assert await store.machines_changed_since(None) == ([], None)  # nothing yet: no mark
    await seed(store, tmp_path)
    changed, mark = await store.machines_changed_since(None)
    assert changed == [] and mark is not None  # a new feed starts at the newest change
    assert await store.machines_changed_since(mark) == ([], mark)
    await store.update_machine("m2", desired="provisioned")
    changed, after = await store.machines_changed_since(mark)
    assert [m.name for m in changed] == ["m2"] and changed[0].desired == "provisioned"
    assert after is not None and after > mark
    ev = Event(kind="machine.transition", at=utcnow(), machine="m1")
    assert await store.write_transition(
        "m1", "PoweringOn", expect=["Registered"], reason="t", event=ev, fields={}
    )
    await store.update_machine("m2", attempts=2)
    changed, last = await store.machines_changed_since(after)
    assert [(m.name, m.state, m.attempts) for m in changed] == [
        ("m1", "PoweringOn", 0),
        ("m2", "Registered", 2),
    ]
    assert last is not None and last > after
    assert await store.machines_changed_since(last) == ([], last)


async def test_feed_reports_events_after_a_cursor(contract_store: Store) -> None:
    store = contract_store
    assert await store.events_after(None) == ([], 0)  # an empty log: the first events still come
    await store.append_events([Event(kind="first", at=utcnow())])
    first, _ = await store.events_after(0)
    assert [e.kind for e in first] == ["first"]
    await store.append_events([Event(kind="old", at=utcnow(), message=str(i)) for i in range(3)])
    fresh, cursor = await store.events_after(None)
    assert fresh == [] and cursor is not None  # a new feed starts after the newest event
    assert await store.events_after(cursor) == ([], cursor)
    await store.append_events(
        [Event(kind="new", at=utcnow(), machine="m1", message=str(i)) for i in range(3)]
    )
    fresh, after = await store.events_after(cursor, limit=2)
    assert [(e.kind, e.message, e.machine) for e in fresh] == [("new", "0", "m1"), ("new", "1", "m1")]
    assert after == fresh[-1].id and fresh[0].id > cursor
    rest, last = await store.events_after(after)
    assert [e.message for e in rest] == ["2"] and last == rest[0].id
    assert await store.events_after(last) == ([], last)


async def test_config_tokens_newest_first_and_revoked_on_release(contract_store: Store) -> None:
    store = contract_store
    assert await store.list_config_tokens("m1") == []
    await put_token(store, "m1", "10.0.0.1", used_by="10.0.0.11")
    await put_token(store, "m2", "10.0.0.2")
    await put_token(store, "m1", "10.0.0.3")
    tokens = await store.list_config_tokens("m1")
    assert [(t.machine, t.issued_to, t.used_by, t.revoked) for t in tokens] == [
        ("m1", "10.0.0.3", "", False),
        ("m1", "10.0.0.1", "10.0.0.11", False),
    ]
    assert tokens[0].used_at is None and tokens[1].used_at is not None
    assert tokens[0].expires_at > tokens[0].issued_at
    assert [t.issued_to for t in await store.list_config_tokens("m1", limit=1)] == ["10.0.0.3"]
    await store.release_machine("m1", [])
    assert [t.revoked for t in await store.list_config_tokens("m1")] == [True, True]
    assert [t.revoked for t in await store.list_config_tokens("m2")] == [False]


async def test_ping(contract_store: Store) -> None:
    await contract_store.ping()


async def test_broken_store_raises_from_every_operation() -> None:
    broken: Store = BrokenStore()
    with pytest.raises(StoreUnavailableError):
        await broken.ping()
    with pytest.raises(StoreUnavailableError):
        await broken.list_machines()
    with pytest.raises(StoreUnavailableError):
        await broken.record_discovered("52:54:00:00:00:01")
    assert broken.box.open(broken.box.seal(b"x", "c"), "c") == b"x"


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
    store = SqlStore.open(db_url, state_dir)
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
