"""Fixtures of the lab tests: a lab per test in a uniquely named namespace, torn down always."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lab import control

# The helpers next to this file import by plain name under any pytest import mode.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from lab_support import Lab, lab_options

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session", autouse=True)
def _reap_stale_labs() -> None:
    """Take down labs left by an earlier test run that was killed (kill -9)."""
    control.down_registered(stale_only=True)


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A lab with two machines (lab-cp1, lab-w1), VMs off; firmware BIOS unless the test
    parametrizes this fixture indirectly with another one."""
    firmware = getattr(request, "param", "bios")
    options = lab_options(tmp_path / "state", firmware=firmware)
    try:
        control.up(options)
        yield Lab(options, control.bmc_password(options.state_dir))
    finally:
        keep = tmp_path / "logs"
        if options.state_dir.exists():
            keep.mkdir(exist_ok=True)
            for log in options.state_dir.glob("*.log"):
                shutil.copy(log, keep / log.name)
        control.down(options.state_dir)
