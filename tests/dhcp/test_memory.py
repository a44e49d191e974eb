"""docs/threats.md A13 / issue item 6: bounded memory with 60,000 leases under 2 x 100,000 requests."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.dhcp.netns import PYTHON, REPO


@pytest.mark.slow
def test_rss_bounded_and_flat() -> None:
    res = subprocess.run(
        [PYTHON, "-m", "tests.dhcp.memory_probe"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    m = json.loads(res.stdout.strip().splitlines()[-1])
    assert m["leases"] >= 60_000
    assert m["acks"] >= 50_000  # the repeated renewals were all answered
    assert m["rss_after"] < 200, m
    assert m["rss_after"] - m["rss_before"] < 8, m  # flat
    assert m["traced_growth"] < 4 * 1024 * 1024, m
    assert m["offers"] <= 5_000
