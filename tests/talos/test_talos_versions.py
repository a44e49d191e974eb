"""Talos versions outside the known contracts: refused when older, newest contract when newer."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from provisioner.cli import cli
from provisioner.talos.contract import NEWEST as NEWEST_KNOWN

from .conftest import GOLDEN_DIR, stability_text
from .test_talos_routes import MACHINES

CLUSTER = """\
kind: Cluster
name: base
talosVersion: {version}
kubernetesVersion: 1.28.0
endpoint: https://base:6443
hostnameMode: stable
"""


def _settings(tmp_path: Path, version: str) -> tuple[Path, Path]:
    settings = tmp_path / "provisioner.toml"
    settings.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(CLUSTER.format(version=version) + MACHINES)
    return settings, inventory


def run(settings: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(settings), *args])


def test_older_than_supported_is_refused_with_file_and_line(tmp_path: Path) -> None:
    settings, inventory = _settings(tmp_path, "v1.9.6")
    result = run(settings, "inventory", "validate", str(inventory))
    assert result.exit_code == 1
    assert (
        f"{inventory}:3: Cluster talosVersion: Talos v1.9.6 is older than the oldest supported "
        "version contract 1.10" in result.output
    )
    result = run(settings, "inventory", "apply", str(inventory))
    assert result.exit_code == 1
    assert "nothing was changed" in result.output


def test_newer_than_known_warns_then_generates_the_newest_contract(tmp_path: Path) -> None:
    settings, inventory = _settings(tmp_path, "v1.16.0")
    note = "Talos v1.16.0 is newer than the newest known version contract 1.15: generating the 1.15 contract"
    result = run(settings, "inventory", "validate", str(inventory))
    assert result.exit_code == 0, result.output
    assert f"warning: {inventory}:3: Cluster talosVersion: {note}" in result.output
    assert run(settings, "inventory", "apply", str(inventory)).exit_code == 0
    secrets = run(settings, "cluster", "secrets", "base", "--from-file", str(GOLDEN_DIR / "secrets.yaml"))
    assert secrets.exit_code == 0, secrets.output
    result = run(settings, "cluster", "config", "base", "base-worker", "--mode", "container")
    assert result.exit_code == 0, result.output
    assert result.stdout == stability_text(NEWEST_KNOWN, "base-worker.yaml")
    events = json.loads(run(settings, "machines", "events", "base-worker", "--json").stdout)
    contract_events = [(e["severity"], e["message"]) for e in events if e["kind"] == "config.contract"]
    assert contract_events == [("warning", note)]
