"""The agent's console markers per boot, as `lab status` and the demo's summary show them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.cli import vm_lines
from lab.control import VmStatus
from lab.markers import agent_report, read_agent_report
from lab.report import MachineOutcome, first_attempt_problems, outcome_table

pytestmark = pytest.mark.lab

REJECTED = (
    "trustd certificate rejected: error 9 at 0 depth lookup: certificate is not yet valid "
    "(node clock 2026-12-02T05:41:30Z, notBefore=Dec  2 05:41:31 2026 GMT)"
)
# A worker's console: SeaBIOS/iPXE noise, a first boot whose agent failed, the retry's
# reset (lab BMC line), the second boot that worked. The kernel interleaves its own lines.
RETRIED_LOG = f"""
=== LAB-BMC: power on lab-w1 at 2026-12-02T05:41:00Z boot once=n,order=cn
SeaBIOS (version 1.16.2-debian-1.16.2-1)
iPXE (https://ipxe.org) 00:03.0 CA00 PCI2.10 PnP PMM+0FF8B000+...
LAB-AGENT: start (kernel 6.1.0-57-amd64, clock 2026-12-02T05:41:12Z)
LAB-AGENT: network up eth0 10.77.0.11 mac 52:54:00:77:00:11
[    9.123456] random: crng init done
LAB-AGENT: config fetched type=worker attempts=1
LAB-AGENT: FAILED {REJECTED}\r
=== LAB-BMC: reset lab-w1 at 2026-12-02T05:44:31Z
SeaBIOS (version 1.16.2-debian-1.16.2-1)
LAB-AGENT: start (kernel 6.1.0-57-amd64, clock 2026-12-02T05:44:45Z)
LAB-AGENT: network up eth0 10.77.0.11 mac 52:54:00:77:00:11
LAB-AGENT: config fetched type=worker attempts=1
LAB-AGENT: trustd certificate issued by 10.77.0.1:50001 attempts=1
LAB-AGENT: serving 50000 on 10.77.0.11
"""
CLEAN_LOG = """
=== LAB-BMC: power on lab-cp1 at 2026-12-02T05:41:00Z boot once=n,order=cn
LAB-AGENT: start (kernel 6.1.0-57-amd64, clock 2026-12-02T05:41:12Z)
LAB-AGENT: certificate signed with the OS CA from the config
LAB-AGENT: serving 50000 on 10.77.0.10
"""


def test_boots_split_at_bmc_lines_and_failures_are_kept() -> None:
    report = agent_report(RETRIED_LOG)
    assert len(report.boots) == 2
    assert report.boots[0].failure == REJECTED
    assert report.boots[1].failure is None
    assert report.failures == (f"boot 1: {REJECTED}",)
    assert report.last == "serving 50000 on 10.77.0.11"


def test_a_reset_without_bmc_line_still_starts_a_boot() -> None:
    """virtualbmc (libvirt backend) writes no line: the agent's start marker splits."""
    text = "\n".join(line for line in RETRIED_LOG.splitlines() if not line.startswith("=== LAB-BMC"))
    report = agent_report(text)
    assert [boot.failure for boot in report.boots] == [REJECTED, None]


def test_a_log_without_agent_has_no_boots(tmp_path: Path) -> None:
    assert agent_report("=== LAB-BMC: power on x\nSeaBIOS\niPXE\n").boots == ()
    assert read_agent_report(tmp_path / "missing.serial.log").boots == ()


def test_reading_from_a_mark_skips_earlier_boots(tmp_path: Path) -> None:
    log = tmp_path / "lab-w1.serial.log"
    log.write_text(RETRIED_LOG)
    mark = RETRIED_LOG.encode().index(b"=== LAB-BMC: reset")
    report = read_agent_report(log, mark)
    assert len(report.boots) == 1
    assert report.failures == ()


def _vms(tmp_path: Path) -> list[VmStatus]:
    (tmp_path / "lab-cp1.serial.log").write_text(CLEAN_LOG)
    (tmp_path / "lab-w1.serial.log").write_text(RETRIED_LOG)
    return [
        VmStatus("lab-cp1", "on", "127.0.0.1:6230", tmp_path / "lab-cp1.serial.log"),
        VmStatus("lab-w1", "on", "127.0.0.1:6231", tmp_path / "lab-w1.serial.log"),
        VmStatus("lab-w2", "off", "127.0.0.1:6232", tmp_path / "lab-w2.serial.log"),
    ]


def test_lab_status_shows_each_vms_agent_and_its_failures(tmp_path: Path) -> None:
    lines = vm_lines(_vms(tmp_path))
    text = "\n".join(lines)
    w1 = next(i for i, line in enumerate(lines) if line.startswith("lab-w1 "))
    assert lines[w1].split()[:4] == ["lab-w1", "on", "127.0.0.1:6231", "2"]
    assert lines[w1 + 1].strip() == "agent: serving 50000 on 10.77.0.11"
    assert lines[w1 + 2].strip() == f"agent FAILED in boot 1: {REJECTED}"
    assert "agent: serving 50000 on 10.77.0.10" in text
    w2 = next(i for i, line in enumerate(lines) if line.startswith("lab-w2 "))
    assert lines[w2].split()[:4] == ["lab-w2", "off", "127.0.0.1:6232", "0"]
    assert w2 == len(lines) - 1  # never booted: nothing more to say


def test_demo_summary_names_the_failure_and_the_retry(tmp_path: Path) -> None:
    outcomes = [
        MachineOutcome(vm.name, "Provisioned", attempts, read_agent_report(vm.serial_log))
        for vm, attempts in zip(_vms(tmp_path)[:2], (1, 2), strict=True)
    ]
    table = outcome_table(outcomes)
    assert f"FAILED in boot 1: {REJECTED}" in table
    row = next(line for line in table.splitlines() if line.startswith("lab-w1"))
    assert row.split()[:4] == ["lab-w1", "Provisioned", "2", "2"]
    assert first_attempt_problems(outcomes) == [f"lab-w1: 2 attempts, 2 agent boots (boot 1: {REJECTED})"]
    assert first_attempt_problems(outcomes[:1]) == []


def test_first_attempt_needs_one_attempt_one_boot_and_provisioned() -> None:
    one_boot = agent_report(CLEAN_LOG)
    assert first_attempt_problems([MachineOutcome("a", "Failed", 1, one_boot)]) == [
        "a: Failed, not Provisioned"
    ]
    # two boots on one attempt (a reset the daemon did not count) is not a clean run either
    two = agent_report(CLEAN_LOG + CLEAN_LOG)
    assert first_attempt_problems([MachineOutcome("a", "Provisioned", 1, two)]) == [
        "a: 1 attempts, 2 agent boots (no agent failure on its console)"
    ]
