"""Run blocking BMC client calls (pyghmi, sushy) from asyncio, safely.

Rules, shared by the IPMI and Redfish drivers:

* One call at a time per BMC (an `asyncio.Lock` per key): BMCs have few session slots
  and some misbehave under concurrent sessions.
* At most `concurrency` calls in flight overall (an `asyncio.Semaphore`), executed on a
  private thread pool of the same size, so a BMC storm cannot starve the event loop's
  default executor (DNS lookups, file I/O).
* Each call has a deadline. Waiting for the lock or a slot counts against it, so a
  caller never waits longer than `timeout_s`.
* A thread cannot be killed. When the deadline passes while the client is still blocked,
  the caller gets `BmcTimeout` at once and the thread is *orphaned*: it keeps its BMC
  lock and its pool slot until the client library gives up on its own (pyghmi: about 5 s
  for an unanswered login, up to ~2x its retry budget, tens of seconds, for a command;
  sushy: the connect/read timeouts we pass). Orphans are therefore bounded by
  `concurrency`, and a second call to a hung BMC fails fast with "previous call still
  running" instead of piling up threads. `orphans` counts the ones still running.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from provisioner.power.base import BmcTimeout

__all__ = ["BlockingCalls"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class BlockingCalls:
    """The thread/lock/timeout discipline for blocking BMC clients (see module doc)."""

    def __init__(self, *, concurrency: int, timeout_s: float) -> None:
        """`concurrency`: global cap on calls in flight; `timeout_s`: default deadline."""
        self.timeout_s = timeout_s
        self._semaphore = asyncio.Semaphore(concurrency)
        self._locks: dict[str, asyncio.Lock] = {}
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bmc")
        self._counters: Counter[str] = Counter()
        self.orphans = 0

    def counters(self) -> Mapping[str, int]:
        """`calls`, `timeouts`, `orphaned` (threads left behind a deadline), `busy`."""
        return {**self._counters, "orphans_running": self.orphans}

    async def run(self, key: str, label: str, fn: Callable[[], T], *, timeout_s: float | None = None) -> T:
        """Run `fn()` in a worker thread under the per-`key` lock; `label` names the BMC.

        Raises what `fn` raises, or `BmcTimeout` when the deadline passes.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (budget := self.timeout_s if timeout_s is None else timeout_s)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with asyncio.timeout_at(deadline):
                await lock.acquire()
        except TimeoutError:
            self._counters["busy"] += 1
            raise _still_running(label, budget) from None
        try:
            async with asyncio.timeout_at(deadline):
                await self._semaphore.acquire()
        except TimeoutError:
            lock.release()
            self._counters["busy"] += 1
            raise BmcTimeout(label, "too many BMC calls in flight", "raise [power] concurrency") from None
        except BaseException:
            lock.release()
            raise
        self._counters["calls"] += 1
        orphaned = False

        def finished(done: Future[T]) -> None:
            # Runs in the pool thread when fn returns, however late: only then may the
            # next call to this BMC start.
            try:
                loop.call_soon_threadsafe(release, done)
            except RuntimeError:  # the loop is gone (shutdown): nothing left to release
                log.debug("call to %s finished after its event loop closed", label)

        def release(done: Future[T]) -> None:
            nonlocal orphaned
            self._semaphore.release()
            lock.release()
            if orphaned:
                self.orphans -= 1
                log.info("orphaned call to %s finished late", label)
            if not done.cancelled():
                done.exception()  # retrieved: no "never retrieved" warning

        cfuture = self._executor.submit(fn)
        cfuture.add_done_callback(finished)
        wrapped = asyncio.wrap_future(cfuture)
        # After a timeout nobody awaits `wrapped`; retrieve its outcome when the orphaned
        # thread finally ends, or asyncio logs "Future exception was never retrieved".
        wrapped.add_done_callback(_retrieve)
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(wrapped)
        except TimeoutError:
            if not cfuture.done():
                orphaned = True
                self.orphans += 1
                self._counters["orphaned"] += 1
            self._counters["timeouts"] += 1
            raise BmcTimeout(
                label,
                f"no complete answer within {budget:g} s ([power] timeout_s)",
                "the BMC may be hung or overloaded; check it answers ipmitool/curl",
            ) from None

    def close(self) -> None:
        """Stop accepting work; running (possibly orphaned) threads finish on their own."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _still_running(label: str, budget: float) -> BmcTimeout:
    return BmcTimeout(
        label,
        f"a previous call to this BMC is still running after {budget:g} s",
        "the BMC stopped answering; check it is alive and not overloaded",
    )


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
