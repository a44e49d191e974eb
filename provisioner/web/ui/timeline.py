"""Pure: a machine's state transitions → provisioning runs drawn as stage bars.

A run starts at each move into PoweringOn (the reconciler's first step of every attempt,
provisioner/reconciler.py) or into Deprovisioning; the moves before the first such start
form a run of their own. Each stage lasts until the next transition; the last one lasts
until `now`. No clock is read here: `now` comes in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Bar", "Run", "Transition", "human", "runs", "when"]

RUN_STARTS = frozenset({"PoweringOn", "Deprovisioning"})
RESTING = frozenset({"Provisioned", "Failed", "Registered"})
"""States a run ends in: drawn as a short end mark, not as a bar that grows until the
next run (a machine Provisioned for a month would otherwise flatten every other stage)."""
BAR_WIDTH = 1000  # SVG user units for the longest run
END_MARK = 14  # width of a resting state's mark
MIN_BAR = 2  # a stage of a few milliseconds is still visible


@dataclass(frozen=True, slots=True)
class Transition:
    """One move of a machine into `state` at `at`, with why."""

    at: datetime
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Bar:
    """One stage of a run: where it starts in the run and how long it lasted."""

    state: str
    offset_s: float
    duration_s: float
    reason: str
    x: int = 0
    width: int = 0
    resting: bool = False


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt: its stages in order."""

    number: int
    started: datetime
    bars: tuple[Bar, ...]

    @property
    def duration_s(self) -> float:
        """From the first stage's start to the last stage's end."""
        return sum(b.duration_s for b in self.bars if not b.resting)

    @property
    def outcome(self) -> str:
        """The state the run ended in (or is still in)."""
        return self.bars[-1].state if self.bars else ""


def runs(transitions: Sequence[Transition], now: datetime) -> list[Run]:
    """Group transitions (oldest first) into runs, newest run first, with SVG geometry."""
    groups: list[list[Transition]] = []
    for t in sorted(transitions, key=lambda t: t.at):
        if not groups or t.state in RUN_STARTS:
            groups.append([])
        groups[-1].append(t)
    flat = [t for g in groups for t in g]
    ends = {id(t): (flat[i + 1].at if i + 1 < len(flat) else now) for i, t in enumerate(flat)}
    raw: list[tuple[datetime, list[tuple[Transition, float, float, bool]]]] = []
    for group in groups:
        start = group[0].at
        stages = []
        for i, t in enumerate(group):
            resting = i == len(group) - 1 and i > 0 and t.state in RESTING
            duration = max(0.0, (ends[id(t)] - t.at).total_seconds())
            stages.append((t, (t.at - start).total_seconds(), duration, resting))
        raw.append((start, stages))
    longest = max((sum(d for _, _, d, r in s if not r) for _, s in raw), default=0.0) or 1.0
    scale = (BAR_WIDTH - END_MARK) / longest
    out = []
    for number, (start, stages) in enumerate(raw, 1):
        bars = tuple(
            Bar(
                state=t.state,
                offset_s=offset,
                duration_s=duration,
                reason=t.reason,
                x=round(offset * scale),
                width=END_MARK if resting else max(MIN_BAR, round(duration * scale)),
                resting=resting,
            )
            for t, offset, duration, resting in stages
        )
        out.append(Run(number=number, started=start, bars=bars))
    out.reverse()
    return out


def human(seconds: float) -> str:
    """A short duration: 4.2s, 3m05s, 2h07m, 3d04h."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def when(value: datetime | None) -> str:
    """A timestamp as people read it: `2026-12-02 06:16:38 UTC` (naive values are UTC)."""
    if value is None:
        return ""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
