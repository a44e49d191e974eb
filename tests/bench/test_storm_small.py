"""A small boot storm (issue 17) as a regression test of correctness, not of speed.

50 simulated machines (Redfish BMCs, relayed and broadcast DHCP, TFTP, iPXE, scripts,
assets, configs, trustd, the trust check) against the real `provisioner serve` in its own
network namespace, through bench/storm's code: every machine must reach Provisioned on its
first attempt (max_attempts = 1) with no failure at any stage. Timings are not asserted.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from lib_storm import STAGES, Options, run_ours  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

N = 50


def test_storm_of_50_provisions_every_machine_first_time(tmp_path: Path) -> None:
    out = run_ours(Options(machines=N, asset_mib=2.0, timeout_s=300.0), tmp_path)
    assert out.failures == {}
    assert out.states == {"Provisioned": N}
    # Every machine went through every stage; one control plane signs its own certificate.
    for stage in STAGES:
        expected = N - 1 if stage == "trustd" else N
        assert len(out.stages.get(stage, [])) == expected, stage
    assert out.requests["trustd"] == N - 1
    assert out.requests["dhcp"] == 4 * N  # two DORAs per machine, no retransmission needed
    assert out.time_to_provisioned > 0
