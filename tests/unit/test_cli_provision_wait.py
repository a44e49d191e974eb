"""`provisioner provision --wait`: the live table, then the summary with times per stage."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from provisioner.cli import power

T0 = datetime(2026, 12, 2, 5, 0, 0, tzinfo=UTC)


def _transition(at_s: float, frm: str, to: str) -> dict[str, Any]:
    at = (T0 + timedelta(seconds=at_s)).isoformat()
    return {"kind": "machine.transition", "at": at, "data": {"from": frm, "to": to}}


def _run_events() -> list[dict[str, Any]]:
    """One provisioning run as the daemon records it (oldest first)."""
    return [
        _transition(0, "Registered", "PoweringOn"),
        _transition(2, "PoweringOn", "Netbooting"),
        {"kind": "dhcp.ack", "at": (T0 + timedelta(seconds=5)).isoformat(), "data": {}},
        # the web layer's move Netbooting -> ConfigServed (provisioner/web/config.py)
        {"kind": "config.served", "at": (T0 + timedelta(seconds=20)).isoformat(), "data": {"bytes": 9}},
        _transition(26, "ConfigServed", "Trusted"),
        _transition(27, "Trusted", "Provisioned"),
    ]


def _install_run_events() -> list[dict[str, Any]]:
    """A run whose node sends Talos events: the install stages, and many node.event rows."""
    events = [
        *_run_events()[:4],
        _transition(23, "ConfigServed", "Installing"),
        _transition(30, "Installing", "Rebooting"),
        _transition(33, "Rebooting", "BootedFromDisk"),
        _transition(36, "BootedFromDisk", "Trusted"),
        _transition(37, "Trusted", "Provisioned"),
    ]
    noise = [
        {"kind": "node.event", "at": (T0 + timedelta(seconds=21 + i / 100)).isoformat(), "data": {}}
        for i in range(500)
    ]
    merged = sorted([*events, *noise], key=lambda e: e["at"])
    return [{**e, "id": i} for i, e in enumerate(merged, 1)]


def test_stage_times_count_the_config_served_stage() -> None:
    times = power.stage_times(_run_events())
    assert times == {"PoweringOn": 2.0, "Netbooting": 18.0, "ConfigServed": 6.0, "Trusted": 1.0}


class FakeClient:
    """The daemon's API as `_wait` uses it: one machine, Provisioned at the third poll."""

    def __init__(self) -> None:
        self.polls = 0

    def machines(self) -> list[dict[str, Any]]:
        self.polls += 1
        state = "Provisioned" if self.polls >= 3 else "Netbooting"
        return [{"name": "lab-w1", "state": state, "desired": "provisioned", "attempts": 1}]

    def machine(self, name: str) -> dict[str, Any]:
        return {"name": name, "state": "Provisioned", "state_reason": "settled"}

    def events(self, *, machine: str, kind: str, limit: int) -> dict[str, Any]:
        assert machine == "lab-w1"
        items = [e for e in _install_run_events() if e["kind"] == kind]
        return {"items": list(reversed(items))[:limit]}  # the API answers newest first


@pytest.mark.parametrize("terminal", [False, True])
def test_wait_prints_live_table_then_summary_on_their_own_lines(
    monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=terminal, color_system=None, highlight=False)
    monkeypatch.setattr(power, "console", console)
    monkeypatch.setattr(power, "WAIT_POLL_S", 0.01)
    assert power._wait(FakeClient(), ["lab-w1"], "provisioned", timeout=30)
    text = out.getvalue()
    # the live table's bottom border ends its line; the summary's top border starts one
    assert "┘┏" not in text
    lines = text.replace("\r", "\n").splitlines()
    summary_top = next(i for i, line in enumerate(lines) if "ConfigServed" in line) - 1
    assert lines[summary_top].lstrip("\x1b[?25h").startswith("┏"), lines[summary_top]
    assert lines[summary_top - 1].rstrip().endswith("┘"), lines[summary_top - 1]
    row = next(line for line in lines[summary_top:] if line.startswith("│ lab-w1"))
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    # PoweringOn, Netbooting, ConfigServed, Installing, Rebooting, BootedFromDisk, Trusted, TOTAL
    assert cells[:10] == [
        "lab-w1",
        "Provisioned",
        "2.0s",
        "18.0s",
        "3.0s",
        "7.0s",
        "3.0s",
        "3.0s",
        "1.0s",
        "37.0s",
    ], cells


class SilentNodeClient(FakeClient):
    """A node that sends no Talos events: ConfigServed -> Trusted directly."""

    def events(self, *, machine: str, kind: str, limit: int) -> dict[str, Any]:
        items = [{**e, "id": i} for i, e in enumerate(_run_events(), 1) if e["kind"] == kind]
        return {"items": list(reversed(items))[:limit]}


def test_summary_leaves_out_install_stages_no_machine_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(power, "console", Console(file=out, width=160, color_system=None))
    power._summary(SilentNodeClient(), ["lab-w1"])
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "ConfigServed" in line)
    assert "Installing" not in header and "BootedFromDisk" not in header
    row = next(line for line in text.splitlines() if line.startswith("│ lab-w1"))
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    # PoweringOn, Netbooting, ConfigServed, Trusted, TOTAL: every stage it went through has a time
    assert cells[:7] == ["lab-w1", "Provisioned", "2.0s", "18.0s", "6.0s", "1.0s", "27.0s"], cells
