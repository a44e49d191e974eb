"""The `provisioner cluster` commands, through the real CLI, the database and the inventory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provisioner.cli import cli
from provisioner.talos.secrets import SecretsBundle, dump_bundle, load_bundle
from provisioner.talos.validate import validate_config

from .conftest import golden_text

INVENTORY = """\
kind: Cluster
name: lab
talosVersion: v1.13.0
kubernetesVersion: 1.33.0
endpoint: https://10.77.0.10:6443
installDisk: /dev/vda
configPatches:
  - machine: {time: {servers: [10.77.0.1]}}
---
kind: Machine
name: lab-cp1
cluster: lab
role: controlplane
macs: [52:54:00:77:00:10]
ip: 10.77.0.10
---
kind: Machine
name: lab-w1
cluster: lab
macs: [52:54:00:77:00:11]
ip: 10.77.0.11
labels: {rack: r1}
taints: [{key: dedicated, value: storage, effect: NoSchedule}]
configPatches:
  - [{op: add, path: /machine/kubelet/extraArgs, value: {max-pods: "50"}}]
---
kind: Cluster
name: empty
talosVersion: v1.14.0
kubernetesVersion: 1.34.1
endpoint: https://10.0.0.1:6443
"""


@pytest.fixture
def settings(tmp_path: Path) -> Path:
    """A settings file with its own state directory, and the inventory applied."""
    path = tmp_path / "provisioner.toml"
    path.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    inv = tmp_path / "inv.yaml"
    inv.write_text(INVENTORY)
    result = run(path, "inventory", "apply", str(inv))
    assert result.exit_code == 0, result.output
    return path


def run(settings: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(settings), *args])


@pytest.fixture
def with_secrets(settings: Path, tmp_path: Path, fresh_bundle: SecretsBundle) -> Path:
    """Cluster 'lab' has secrets already (imported: avoids RSA generation)."""
    bundle_file = tmp_path / "bundle.yaml"
    bundle_file.write_text(dump_bundle(fresh_bundle))
    result = run(settings, "cluster", "secrets", "lab", "--from-file", str(bundle_file))
    assert result.exit_code == 0, result.output
    assert "imported" in result.output
    return settings


def test_secrets_stored_encrypted_export_and_keep(
    with_secrets: Path, tmp_path: Path, fresh_bundle: SecretsBundle
) -> None:
    export = tmp_path / "out.yaml"
    result = run(with_secrets, "cluster", "secrets", "lab", "--export", str(export))
    assert result.exit_code == 0, result.output
    assert "kept existing" in result.output
    assert load_bundle(export.read_text()) == fresh_bundle
    assert export.stat().st_mode & 0o777 == 0o600
    # at rest: the database holds ciphertext only
    db = tmp_path / "state" / "provisioner.db"
    raw = b"".join(p.read_bytes() for p in db.parent.glob("provisioner.db*"))
    assert fresh_bundle.trustd_token.encode() not in raw
    assert fresh_bundle.secretbox_encryption_secret.encode() not in raw
    with sqlite3.connect(db) as conn:
        [(blob,)] = conn.execute("select secrets_enc from cluster where name = 'lab'").fetchall()
    assert blob and b"trustdinfo" not in blob


def test_secrets_refuses_to_overwrite_with_different_bundle(
    with_secrets: Path, tmp_path: Path, golden_bundle: SecretsBundle
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(dump_bundle(golden_bundle))
    result = run(with_secrets, "cluster", "secrets", "lab", "--from-file", str(other))
    assert result.exit_code == 1
    assert "already has different secrets" in result.output


def test_secrets_need_the_cluster_in_the_inventory(settings: Path) -> None:
    result = run(settings, "cluster", "secrets", "nope")
    assert result.exit_code == 1
    assert "apply the inventory that defines it first" in result.output


def test_secrets_generates_a_new_bundle_with_the_clusters_contract(settings: Path, tmp_path: Path) -> None:
    export = tmp_path / "e.yaml"
    result = run(settings, "cluster", "secrets", "empty", "--export", str(export))
    assert result.exit_code == 0, result.output
    assert "generated" in result.output
    bundle = load_bundle(export.read_text())
    again = run(settings, "cluster", "secrets", "empty", "--export", str(export))
    assert "kept existing" in again.output
    assert load_bundle(export.read_text()) == bundle


def test_config_for_inventory_machines(with_secrets: Path, tmp_path: Path) -> None:
    result = run(with_secrets, "cluster", "config", "lab", "lab-w1")
    assert result.exit_code == 0, result.output
    text = result.output
    assert validate_config(text) == []
    assert "type: worker" in text
    assert "hostname: lab-w1" in text
    assert 'max-pods: "50"' in text  # machine JSON patch
    assert "- 10.77.0.1" in text  # cluster strategic-merge patch (time servers)
    assert "dedicated: storage:NoSchedule" in text
    assert "disk: /dev/vda" in text
    out = tmp_path / "configs"
    result = run(with_secrets, "cluster", "config", "lab", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["lab-cp1.yaml", "lab-w1.yaml"]
    cp = (out / "lab-cp1.yaml").read_text()
    assert "type: controlplane" in cp and validate_config(cp) == []
    assert (out / "lab-cp1.yaml").stat().st_mode & 0o777 == 0o600


def test_adhoc_config_for_both_roles(with_secrets: Path, tmp_path: Path) -> None:
    out = tmp_path / "adhoc"
    result = run(
        with_secrets,
        "cluster",
        "config",
        "lab",
        "--endpoint",
        "https://10.77.0.10:6443",
        "--out",
        str(out),
        "--patch",
        "machine:\n  sysctls:\n    net.core.somaxconn: '65535'\n",
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["controlplane.yaml", "worker.yaml"]
    for path in out.iterdir():
        text = path.read_text()
        assert validate_config(text) == [], path
        assert 'net.core.somaxconn: "65535"' in text
        # The cluster's own fields and configPatches apply in ad-hoc mode too.
        assert "disk: /dev/vda" in text
        assert "- 10.77.0.1" in text  # machine.time.servers from the cluster's configPatches


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        (
            "--install-disk",
            "/dev/sda",
            "--install-disk /dev/sda conflicts with cluster lab's installDisk /dev/vda",
        ),
        (
            "--kubernetes-version",
            "1.30.0",
            "--kubernetes-version 1.30.0 conflicts with cluster lab's kubernetesVersion 1.33.0",
        ),
    ],
)
def test_adhoc_refuses_flags_that_contradict_the_cluster(
    with_secrets: Path, flag: str, value: str, message: str
) -> None:
    result = run(
        with_secrets, "cluster", "config", "lab", "--endpoint", "https://10.77.0.10:6443", flag, value
    )
    assert result.exit_code == 1
    assert message in result.output


def test_config_without_secrets_fails_clearly(settings: Path) -> None:
    result = run(settings, "cluster", "config", "lab", "lab-w1")
    assert result.exit_code == 1
    assert "run `provisioner cluster secrets lab`" in result.output


def test_talosconfig_defaults_to_control_plane_addresses(with_secrets: Path, tmp_path: Path) -> None:
    out = tmp_path / "talosconfig"
    result = run(with_secrets, "cluster", "talosconfig", "lab", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith(
        "context: lab\ncontexts:\n    lab:\n        endpoints:\n            - 10.77.0.10\n"
    )
    assert out.stat().st_mode & 0o777 == 0o600


def test_validate_command(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(golden_text("v1.13-base-worker.yaml"))
    result = CliRunner().invoke(cli, ["cluster", "validate", str(good), "--mode", "cloud"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(golden_text("v1.13-base-worker.yaml").replace("d8cwfa.eyvpi0xwxyarbfid", "nope"))
    result = CliRunner().invoke(cli, ["cluster", "validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: machine.token: must match" in result.output
    assert f"{bad}: machine.install: either install disk or diskSelector should be defined" in result.output


def test_bad_cluster_name_is_rejected(settings: Path) -> None:
    result = run(settings, "cluster", "secrets", "Bad_Name")
    assert result.exit_code == 2
    assert "invalid cluster name" in result.output


def test_rotate_token_keeps_the_cas(with_secrets: Path, tmp_path: Path, fresh_bundle: SecretsBundle) -> None:
    result = run(with_secrets, "cluster", "rotate-token", "lab")
    assert result.exit_code == 0, result.output
    export = tmp_path / "after.yaml"
    assert run(with_secrets, "cluster", "secrets", "lab", "--export", str(export)).exit_code == 0
    after = load_bundle(export.read_text())
    assert after.trustd_token != fresh_bundle.trustd_token
    assert after.os == fresh_bundle.os and after.k8s == fresh_bundle.k8s
    config = run(with_secrets, "cluster", "config", "lab", "lab-w1").output
    assert f"token: {after.trustd_token}" in config
    assert fresh_bundle.trustd_token not in config
