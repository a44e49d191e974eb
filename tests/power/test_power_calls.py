"""BlockingCalls: one call per BMC, a global cap, deadlines and orphaned threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from provisioner.power import BmcTimeout
from provisioner.power.calls import BlockingCalls


class Tracker:
    """Blocking work that records how many calls overlap, per key and overall."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.max_per_key: dict[str, int] = {}
        self.total = 0
        self.max_total = 0

    def work(self, key: str, seconds: float) -> str:
        with self.lock:
            self.active[key] = self.active.get(key, 0) + 1
            self.max_per_key[key] = max(self.max_per_key.get(key, 0), self.active[key])
            self.total += 1
            self.max_total = max(self.max_total, self.total)
        time.sleep(seconds)
        with self.lock:
            self.active[key] -= 1
            self.total -= 1
        return key


async def test_one_call_per_bmc_and_global_cap() -> None:
    pool = BlockingCalls(concurrency=2, timeout_s=5)
    tracker = Tracker()
    try:
        jobs = [
            pool.run(key, key, lambda key=key: tracker.work(key, 0.05))
            for key in ["a", "a", "a", "b", "c", "d"]
        ]
        assert await asyncio.gather(*jobs) == ["a", "a", "a", "b", "c", "d"]
    finally:
        pool.close()
    assert tracker.max_per_key["a"] == 1
    assert tracker.max_total == 2
    assert pool.counters()["calls"] == 6


async def test_errors_propagate() -> None:
    pool = BlockingCalls(concurrency=1, timeout_s=5)

    def boom() -> None:
        raise ValueError("from the thread")

    try:
        with pytest.raises(ValueError, match="from the thread"):
            await pool.run("k", "k", boom)
        assert await pool.run("k", "k", lambda: 7) == 7  # lock and slot were released
    finally:
        pool.close()


async def test_deadline_orphans_the_thread_but_keeps_the_bmc_locked() -> None:
    pool = BlockingCalls(concurrency=2, timeout_s=0.2)
    release = threading.Event()
    try:
        started = time.monotonic()
        with pytest.raises(BmcTimeout, match="no complete answer") as caught:
            await pool.run("bmc1", "ipmi 10.0.0.1:623", release.wait)
        assert time.monotonic() - started < 0.5
        assert str(caught.value).startswith("ipmi 10.0.0.1:623: ")
        assert pool.orphans == 1
        # the same BMC: refused at the deadline, without starting another thread
        with pytest.raises(BmcTimeout, match="still running"):
            await pool.run("bmc1", "ipmi 10.0.0.1:623", lambda: None)
        # another BMC still has a slot
        assert await pool.run("bmc2", "b", lambda: "ok") == "ok"
        release.set()
        for _ in range(100):
            if pool.orphans == 0:
                break
            await asyncio.sleep(0.01)
        assert pool.orphans == 0
        assert await pool.run("bmc1", "a", lambda: "back") == "back"
        assert pool.counters()["orphaned"] == 1
        assert pool.counters()["busy"] == 1
    finally:
        release.set()
        pool.close()


async def test_global_cap_exhausted_by_orphans() -> None:
    pool = BlockingCalls(concurrency=1, timeout_s=0.1)
    release = threading.Event()
    try:
        with pytest.raises(BmcTimeout):
            await pool.run("a", "a", release.wait)
        with pytest.raises(BmcTimeout, match="too many BMC calls"):
            await pool.run("b", "b", lambda: None)
    finally:
        release.set()
        pool.close()


async def test_cancelled_caller_keeps_lock_until_thread_ends() -> None:
    pool = BlockingCalls(concurrency=2, timeout_s=5)
    release = threading.Event()
    entered = threading.Event()

    def slow() -> None:
        entered.set()
        release.wait()

    try:
        task = asyncio.ensure_future(pool.run("k", "k", slow))
        await asyncio.to_thread(entered.wait)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(BmcTimeout, match="still running"):
            await pool.run("k", "k", lambda: None, timeout_s=0.1)
        release.set()
        assert await pool.run("k", "k", lambda: 1, timeout_s=2) == 1
    finally:
        release.set()
        pool.close()
