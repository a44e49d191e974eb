"""Medians, spread and the RESULT line, shared by every benchmark (docs/benchmarks.md).

A RESULT line reads

    RESULT <metric> ours=<median> <peer>=<median> ratio=<ours/peer> unit=<unit> n=<a>/<b>
           spread=<x>%/<y>%

(one line) where n is how many samples each median rests on (ours/peer) and spread is
(max - min) / median of those samples, in percent. A peer that could not be measured
reads `<peer>=failed ratio=n/a` with the reason on a `PEER-FAILED` line just before it;
ours failing reads `ours=failed` and makes the benchmark exit non-zero.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    median: float
    n: int
    spread_pct: float  # (max - min) / median, in percent; 0 for one sample

    @property
    def ok(self) -> bool:
        return self.n > 0


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        return Summary(0.0, 0, 0.0)
    med = statistics.median(samples)
    spread = 100 * (max(samples) - min(samples)) / med if med else 0.0
    return Summary(med, len(samples), spread)


def result_line(
    metric: str,
    ours: Sequence[float] | None,
    peer: str,
    theirs: Sequence[float] | None,
    unit: str,
    fmt: str = ".1f",
) -> str:
    """One RESULT line; `None` samples mean that server failed."""
    a = summarize(ours or [])
    b = summarize(theirs or [])
    ours_s = format(a.median, fmt) if ours is not None and a.ok else "failed"
    theirs_s = format(b.median, fmt) if theirs is not None and b.ok else "failed"
    measured = ours is not None and theirs is not None and a.ok and b.ok and b.median > 0
    ratio = f"{a.median / b.median:.2f}" if measured else "n/a"
    return (
        f"RESULT {metric} ours={ours_s} {peer}={theirs_s} ratio={ratio} unit={unit} "
        f"n={a.n}/{b.n} spread={a.spread_pct:.0f}%/{b.spread_pct:.0f}%"
    )
