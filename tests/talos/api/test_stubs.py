"""The committed Talos API stubs are what scripts/gen-talos-api-stubs makes from the protos."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PB = ROOT / "provisioner" / "talos" / "api" / "pb"


def _files(base: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_committed_stubs_match_generator(tmp_path: Path) -> None:
    out = tmp_path / "pb"
    subprocess.run(
        ["sh", str(ROOT / "scripts" / "gen-talos-api-stubs"), str(out)],
        check=True,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    generated = _files(out)
    assert "machine/machine_pb2.py" in generated
    assert generated == _files(PB)
