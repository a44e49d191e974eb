"""The committed generated code matches what grpcio-tools makes from the committed .proto files."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_are_regenerated_identically(tmp_path: Path) -> None:
    out = tmp_path / "pb"
    subprocess.run(
        ["sh", str(ROOT / "scripts" / "gen-telemetry-stubs"), str(out)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    committed = ROOT / "provisioner" / "telemetry" / "pb"
    names = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert names == sorted(
        p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    for name in names:
        assert filecmp.cmp(out / name, committed / name, shallow=False), f"{name} differs: rerun the script"
