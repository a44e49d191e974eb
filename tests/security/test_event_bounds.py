"""Issue 14 (medium): the pieces that bound unauthenticated writes, one by one."""

from __future__ import annotations

from datetime import timedelta

from provisioner.eventagg import OVERFLOW_GROUP, Aggregator
from provisioner.events import Event, Severity, utcnow
from provisioner.store.repository import Store


def _ev(group: str, n: int = 0, severity: Severity = Severity.INFO) -> Event:
    return Event("tftp.transfer", utcnow(), severity=severity, message=f"m{n}", data={"n": n}, group=group)


def test_repeats_from_one_source_fold_into_one_row_per_window() -> None:
    agg = Aggregator(window_s=60, max_keys=10)
    written = list(agg.offer(_ev("10.0.0.1", 0), 0.0))
    for n in range(1, 1000):
        written += agg.offer(_ev("10.0.0.1", n, Severity.WARNING if n == 500 else Severity.INFO), n * 0.01)
    assert [e.data["n"] for e in written] == [0]
    assert agg.due(59.0) == []
    [summary] = agg.due(60.0)
    assert summary.data["repeated"] == 999 and summary.data["n"] == 999
    assert summary.severity is Severity.WARNING  # the loudest folded event
    # A new window writes its first event at once again.
    [again] = agg.offer(_ev("10.0.0.1", 1000), 61.0)
    assert again.data == {"n": 1000}


def test_many_sources_are_capped_into_an_overflow_group() -> None:
    agg = Aggregator(window_s=60, max_keys=8)
    written: list[Event] = []
    for n in range(10_000):
        written += agg.offer(_ev(f"10.0.{n >> 8}.{n & 255}", n), 1.0)
    written += agg.drain()
    assert len(written) <= 2 * (8 + 1)
    assert {e.group for e in written} >= {OVERFLOW_GROUP}
    assert sum(int(e.data.get("repeated", 1)) for e in written) == 10_000  # nothing lost from the count


def test_ungrouped_events_are_written_as_they_come() -> None:
    agg = Aggregator(window_s=60, max_keys=1)
    event = Event("api.change", utcnow())
    assert agg.offer(event, 0.0) == (event,)
    assert agg.offer(event, 0.0) == (event,)


async def test_retention_deletes_old_rows_and_keeps_max_rows(store: Store) -> None:
    now = utcnow()
    old = [Event("old", now - timedelta(days=100)) for _ in range(5)]
    new = [Event("new", now - timedelta(seconds=60 - i), data={"i": i}) for i in range(50)]
    await store.append_events([*old, *new])
    deleted = await store.prune_events(before=now - timedelta(days=90), max_rows=20)
    assert deleted == 35
    kept = await store.list_events(limit=100)
    assert len(kept) == 20 and {e.kind for e in kept} == {"new"}
    assert sorted(e.data["i"] for e in kept) == list(range(30, 50))  # the newest stay


async def test_discovered_table_is_capped_least_recently_seen_first(store: Store) -> None:
    assert await store.record_discovered("02:00:00:00:00:00", source="http", limit=3)
    for i in range(1, 10):
        assert await store.record_discovered(f"02:00:00:00:00:{i:02x}", source="http", limit=3)
        # the first one keeps being seen, so it is never the one evicted
        assert not await store.record_discovered("02:00:00:00:00:00", source="http", limit=3)
    macs = {d.mac for d in await store.list_discovered()}
    assert macs == {"02:00:00:00:00:00", "02:00:00:00:00:08", "02:00:00:00:00:09"}
