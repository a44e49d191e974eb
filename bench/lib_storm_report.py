"""The storm's printout: a table for people, RESULT lines for machines (higher is better)."""

from __future__ import annotations

import statistics
import sys

from lib_storm import Outcome


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of VALUES."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _stages(label: str, out: Outcome) -> None:
    print(f"\n{label}: per-stage latency (s, each from the end of the stage before)")
    print(f"  {'stage':<12} {'n':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for stage, values in out.stages.items():
        print(f"  {stage:<12} {len(values):>6} {statistics.median(values):>8.3f} "
              f"{pct(values, 95):>8.3f} {pct(values, 99):>8.3f} {max(values):>8.3f}")  # fmt: skip
    failures: dict[str, int] = {}
    for reason in out.failures.values():
        failures[reason.split(":")[0]] = failures.get(reason.split(":")[0], 0) + 1
    print(f"  failures by stage: {failures or 0}")
    for name, reason in sorted(out.failures.items())[:5]:
        print(f"    {name}: {reason}")
    print(f"  requests: {out.requests}")


def print_report(ours: Outcome, floor: Outcome | None) -> int:
    """Print everything; exit status 0 only if every machine made it, with no failure."""
    n = ours.machines
    print(f"storm: {n} machines")
    print(f"ours: Provisioned {ours.provisioned}/{n} in {ours.time_to_provisioned:.1f} s "
          f"(all booted, i.e. configs fetched, at {ours.time_to_booted:.1f} s); states {ours.states}")  # fmt: skip
    print(f"  daemon CPU {ours.cpu_s:.1f} s = {1000 * ours.cpu_s / n:.1f} ms per machine; "
          f"peak RSS {ours.peak_rss_mib:.0f} MiB; database {ours.db_bytes / 1e6:.2f} MB")  # fmt: skip
    _stages("ours", ours)
    ok = ours.provisioned == n and not ours.failures
    if floor is not None:
        print(f"\nfloor (dnsmasq + nginx): all booted in {floor.time_to_booted:.1f} s")
        _stages("floor", floor)
        ok = ok and not floor.failures
    if ours.time_to_provisioned > 0:
        rate = n / ours.time_to_provisioned
        print(f"RESULT storm{n}_provisioned_per_s ours={rate:.2f} unit=machines/s")
    if floor is not None and ours.time_to_booted > 0 and floor.time_to_booted > 0:
        a, b = n / ours.time_to_booted, n / floor.time_to_booted
        print(f"RESULT storm{n}_booted_per_s ours={a:.2f} floor={b:.2f} ratio={a / b:.2f} unit=machines/s")
    sys.stdout.flush()
    return 0 if ok else 1
