"""Issue 14 (low): secrets files 0600, created fresh and never through a symlink; the
state directory 0700 and the database files 0600."""

from __future__ import annotations

import asyncio
import os
import stat
from typing import TYPE_CHECKING

from click.testing import CliRunner

from provisioner.cli import cli
from provisioner.talos.secrets import SecretsBundle, dump_bundle

from .daemon import running_daemon

if TYPE_CHECKING:
    from pathlib import Path

INVENTORY = """\
kind: Cluster
name: lab
talosVersion: v1.13.0
kubernetesVersion: 1.33.0
endpoint: https://10.77.0.10:6443
---
kind: Machine
name: lab-cp1
cluster: lab
role: controlplane
macs: [52:54:00:77:00:10]
ip: 10.77.0.10
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _cli(settings: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["--config", str(settings), *args])
    assert result.exit_code == 0, (result.output, result.exception)


def test_talosconfig_out_replaces_0644_file_and_symlink(tmp_path: Path, fresh_bundle: SecretsBundle) -> None:
    settings = tmp_path / "provisioner.toml"
    settings.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    (tmp_path / "bundle.yaml").write_text(dump_bundle(fresh_bundle))
    _cli(settings, "inventory", "apply", str(tmp_path / "inv.yaml"))
    _cli(settings, "cluster", "secrets", "lab", "--from-file", str(tmp_path / "bundle.yaml"))

    old = tmp_path / "talosconfig"
    old.write_text("old\n")
    old.chmod(0o644)
    _cli(settings, "cluster", "talosconfig", "lab", "--out", str(old))
    assert _mode(old) == 0o600 and "ca:" in old.read_text()

    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    victim.chmod(0o644)
    link = tmp_path / "link"
    link.symlink_to(victim)
    _cli(settings, "cluster", "talosconfig", "lab", "--out", str(link))
    assert victim.read_text() == "do not touch\n" and _mode(victim) == 0o644  # not followed
    assert not link.is_symlink() and _mode(link) == 0o600 and "ca:" in link.read_text()

    export = tmp_path / "inventory-export.yaml"
    export.write_text("")
    export.chmod(0o644)
    _cli(settings, "inventory", "export", "-o", str(export))
    assert _mode(export) == 0o600
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


async def test_state_dir_0700_and_database_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)  # as an older version (or a 022 umask) left it
    old_umask = os.umask(0o022)
    try:
        async with running_daemon(tmp_path) as daemon:
            await asyncio.sleep(0.5)
            files = sorted(p.name for p in daemon.state_dir.iterdir())
            modes = {p.name: _mode(p) for p in daemon.state_dir.iterdir()}
            assert _mode(daemon.state_dir) == 0o700
    finally:
        os.umask(old_umask)
    assert "provisioner.db" in files and "provisioner.db-wal" in files, files
    for name in ("provisioner.db", "provisioner.db-wal", "provisioner.db-shm", "secret.key", "api-token"):
        if name in modes:
            assert modes[name] == 0o600, (name, oct(modes[name]))
