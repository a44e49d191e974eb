"""The per-source limit on refused config fetches (docs/threats.md F6)."""

from __future__ import annotations

import aiohttp
from webenv import Env

from provisioner.web.ratelimit import RefusalLimiter


def test_window_limit_alert_once_and_reset() -> None:
    limiter = RefusalLimiter(limit=3, window_s=60)
    for _ in range(3):
        assert limiter.blocked("10.0.0.9", now=100.0) == (False, False)
        limiter.refused("10.0.0.9", now=100.0)
    assert limiter.blocked("10.0.0.9", now=101.0) == (True, True)
    assert limiter.blocked("10.0.0.9", now=102.0) == (True, False)
    assert limiter.blocked("10.0.0.8", now=102.0) == (False, False)  # others unaffected
    assert limiter.blocked("10.0.0.9", now=160.0) == (False, False)  # next window


def test_memory_bounded() -> None:
    limiter = RefusalLimiter(limit=1, max_sources=100)
    for i in range(10_000):
        limiter.refused(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", now=float(i))
    assert len(limiter) == 100


async def test_live_rate_limit(env: Env, http: aiohttp.ClientSession) -> None:
    env.app_ctx.config_limiter = RefusalLimiter(limit=5, window_s=60)
    statuses = []
    for i in range(8):
        async with http.get(f"{env.base}/config?t=guess{i}") as r:
            statuses.append(r.status)
            if r.status == 429:
                assert r.headers["Retry-After"] == "60"
    assert statuses == [403] * 5 + [429] * 3
    alerts = [e for e in env.events.events if e.kind == "config.rate_limited"]
    assert len(alerts) == 1
    assert alerts[0].severity.value == "alert"
    assert alerts[0].data["source"] == "127.0.0.1"
    async with http.get(env.api + "/metrics") as r:
        assert 'provisioner_config_fetches_total{outcome="rate_limited"} 3.0' in await r.text()
