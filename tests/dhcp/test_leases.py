"""Lease stores: the conflict rule (SQLite and PostgreSQL), G2 bad rows, group commit, errors."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from provisioner.dhcp.book import Lease, LeaseState
from provisioner.dhcp.leases import (
    BrokenLeaseStore,
    GroupCommitter,
    MemoryLeaseStore,
    StoreError,
)
from provisioner.store.db import create_schema, make_engine
from provisioner.store.leases import SqlLeaseStore
from tests.dhcp.loopback import loopback_service
from tests.dhcp.packets import client_packet

NOW = time.time()


def lease(
    ip: str, mac: str, *, state: LeaseState = LeaseState.BOUND, ttl: float = 600, **kw: object
) -> Lease:
    return Lease(ip=ip, mac=mac, state=state, expires_at=NOW + ttl, **kw)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def lease_db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/leases.db"
    return str(request.getfixturevalue("pg_database_url"))


@pytest.fixture
async def sql_store(lease_db_url: str) -> AsyncIterator[SqlLeaseStore]:
    engine = make_engine(lease_db_url)
    await create_schema(engine)
    try:
        yield SqlLeaseStore(engine)
    finally:
        await engine.dispose()


async def test_unique_ip_decides_between_instances(sql_store: SqlLeaseStore) -> None:
    a = lease("10.0.0.5", "02:00:00:00:00:01", instance="a")
    b = lease("10.0.0.5", "02:00:00:00:00:02", instance="b")
    assert await sql_store.commit([a], NOW) == [True]
    assert await sql_store.commit([b], NOW) == [False]  # held by another client
    renewed = lease("10.0.0.5", "02:00:00:00:00:01", ttl=1200, instance="b")
    assert await sql_store.commit([renewed], NOW) == [True]  # same client, other instance
    winner = await sql_store.fetch("10.0.0.5")
    assert winner is not None and winner.mac == "02:00:00:00:00:01" and winner.instance == "b"
    # Released or expired rows can be taken over.
    await sql_store.commit([lease("10.0.0.5", "02:00:00:00:00:01", state=LeaseState.RELEASED)], NOW)
    assert await sql_store.commit([b], NOW) == [True]
    await sql_store.commit([lease("10.0.0.6", "02:00:00:00:00:03", ttl=-5)], NOW)
    assert await sql_store.commit([lease("10.0.0.6", "02:00:00:00:00:04")], NOW) == [True]
    # Client-id keyed leases: the same client id from another NIC keeps the address.
    cid = lease("10.0.0.7", "02:00:00:00:00:05", client_id="01aa")
    assert await sql_store.commit([cid], NOW) == [True]
    assert await sql_store.commit([lease("10.0.0.7", "02:00:00:00:00:06", client_id="01aa")], NOW) == [True]
    assert await sql_store.commit([lease("10.0.0.7", "02:00:00:00:00:06", client_id="01bb")], NOW) == [False]
    loaded = await sql_store.load()
    assert {x.ip for x in loaded.leases} == {"10.0.0.5", "10.0.0.6", "10.0.0.7"}
    assert loaded.bad_rows == 0
    changed = await sql_store.changed_since(NOW - 1)
    assert len(changed) == 3
    others = await sql_store.changed_since(NOW - 1, exclude_instance="")
    assert [x.ip for x in others] == ["10.0.0.5"]  # the one row instance "b" wrote last


async def test_batch_of_many_in_one_transaction(sql_store: SqlLeaseStore) -> None:
    batch = [
        lease(f"10.1.{i // 250}.{i % 250 + 1}", f"02:00:00:01:{i // 256:02x}:{i % 256:02x}")
        for i in range(600)
    ]
    assert all(await sql_store.commit(batch, NOW))
    assert len((await sql_store.load()).leases) == 600


async def test_poisoned_rows_are_skipped_on_load(sql_store: SqlLeaseStore) -> None:
    """docs/threats.md G2: rows that fail validation are skipped and counted; the rest load."""
    await sql_store.commit([lease("10.0.0.9", "02:00:00:00:00:09")], NOW)
    async with sql_store.engine.begin() as conn:
        for ip, mac, host, state in (
            ("999.1.1.1", "02:00:00:00:00:0a", "", "bound"),
            ("10.0.0.10", "not-a-mac", "", "bound"),
            ("10.0.0.11", "02:00:00:00:00:0b", "bad\nname", "bound"),
            ("10.0.0.12", "02:00:00:00:00:0c", "", "weird"),
        ):
            await conn.execute(
                text(
                    "insert into lease (ip, mac, client_id, hostname, state, expires_at, instance, updated_at) "
                    "values (:ip, :mac, '', :host, :state, :ts, '', :ts)"
                ),
                {"ip": ip, "mac": mac, "host": host, "state": state, "ts": datetime(2030, 1, 1, tzinfo=UTC)},
            )
    loaded = await sql_store.load()
    assert [x.ip for x in loaded.leases] == ["10.0.0.9"]
    assert loaded.bad_rows == 4


async def test_group_commit_batches_and_reports() -> None:
    store = MemoryLeaseStore()
    committer = GroupCommitter(store)
    committer.start()
    futures = [committer.submit(lease(f"10.0.0.{i}", f"02:00:00:00:01:{i:02x}")) for i in range(1, 101)]
    conflict = committer.submit(lease("10.0.0.1", "02:00:00:00:02:01"))
    results = await asyncio.gather(*futures, conflict)
    assert results[:100] == [True] * 100
    assert results[100] is False
    assert store.commits <= 2  # everything pending went in one transaction
    await committer.stop()
    broken = GroupCommitter(BrokenLeaseStore())
    broken.start()
    with pytest.raises(StoreError):
        await broken.submit(lease("10.0.0.1", "02:00:00:00:00:01"))
    await broken.stop()


def test_no_ack_when_the_store_fails() -> None:
    """A lease that is not durable is never ACKed (and the OFFER path still works)."""
    with loopback_service(store=BrokenLeaseStore()) as lb:
        lb.send(client_packet("discover", "02:00:00:00:33:01"))
        offers = lb.replies(0.5)
        assert len(offers) == 1
        lb.send(client_packet("request", "02:00:00:00:33:01", requested="127.0.0.100", server_id="127.0.0.1"))
        assert lb.replies(0.5) == []
        assert lb.counters()["dropped_store_error"] == 1
        assert lb.service.book.lease_of("02:00:00:00:33:01") is None


class SlowLeaseStore(MemoryLeaseStore):
    """docs/threats.md G4: a database that takes far too long."""

    async def commit(self, leases, now):  # type: ignore[no-untyped-def]
        await asyncio.sleep(10)
        return await super().commit(leases, now)


async def test_slow_store_times_out_instead_of_acking_late() -> None:
    committer = GroupCommitter(SlowLeaseStore(), timeout_s=0.2)
    committer.start()
    started = time.monotonic()
    with pytest.raises(StoreError):
        await committer.submit(lease("10.0.0.1", "02:00:00:00:00:01"))
    assert time.monotonic() - started < 2
    await committer.stop()


MACHINE_MAC = "52:54:00:77:00:11"
MAC_ID = "01" + MACHINE_MAC.replace(":", "")


async def test_an_inventory_machine_is_one_binding_across_client_ids(sql_store: SqlLeaseStore) -> None:
    """Issue 11: firmware (no 61), iPXE (01+MAC) and OS (its own 61) of one machine are one client.

    Written by two instances in turn (scale-out): the database applies the same rule.
    """
    memory = MemoryLeaseStore()
    stages = [
        lease("10.0.0.11", MACHINE_MAC, machine="m1", instance="a"),  # firmware PXE
        lease("10.0.0.11", MACHINE_MAC, client_id=MAC_ID, machine="m1", instance="b"),  # iPXE
        lease("10.0.0.11", MACHINE_MAC, client_id="ff000000010003", machine="m1", instance="a"),  # OS
        lease("10.0.0.11", MACHINE_MAC, machine="m1", instance="b"),  # reprovision: firmware again
    ]
    for stage in stages:
        assert await sql_store.commit([stage], NOW) == [True], stage
        assert await memory.commit([stage], NOW) == [True], stage
    # Still one address for one client: another NIC of that machine, and a stranger sending
    # the machine's own client identifier, both lose while the lease holds.
    for intruder in (
        lease("10.0.0.11", "52:54:00:77:00:f1", machine="m1", instance="b"),
        lease("10.0.0.11", "02:00:00:00:00:99", client_id=MAC_ID, instance="b"),
    ):
        assert await sql_store.commit([intruder], NOW) == [False], intruder
        assert await memory.commit([intruder], NOW) == [False], intruder
    winner = await sql_store.fetch("10.0.0.11")
    assert winner is not None and (winner.mac, winner.client_id) == (MACHINE_MAC, "")


async def test_unknown_clients_keep_client_id_semantics(sql_store: SqlLeaseStore) -> None:
    """RFC 2131 §4.2 / RFC 6842: without an inventory match, option 61 is the identity."""
    memory = MemoryLeaseStore()
    first = lease("10.0.0.20", MACHINE_MAC, client_id=MAC_ID)
    cases = [
        (first, True),
        (lease("10.0.0.20", MACHINE_MAC, client_id="ff01"), False),  # same MAC, other client
        (lease("10.0.0.20", MACHINE_MAC), False),  # same MAC without 61: another client too
        (lease("10.0.0.20", "02:00:00:00:00:07", client_id=MAC_ID), True),  # same id, other NIC
    ]
    for row, expected in cases:
        assert await sql_store.commit([row], NOW) == [expected], row
        assert await memory.commit([row], NOW) == [expected], row


def test_the_sql_rule_frees_exactly_the_states_the_book_frees() -> None:
    """`binding.LEASE_UPSERT_WHERE` lists states as SQL text: keep it in step with `Lease.holds`."""
    from provisioner.dhcp.binding import LEASE_UPSERT_WHERE

    listed = set(re.findall(r"'(\w+)'", LEASE_UPSERT_WHERE.split("lease.state IN", 1)[1].split(")", 1)[0]))
    free = {str(s) for s in LeaseState if not lease("10.0.0.1", "02:00:00:00:00:01", state=s).holds(NOW)}
    assert listed == free
