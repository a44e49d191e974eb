"""Talos's stability goldens through the operator's two routes, byte for byte.

Inventory route: inventory files -> `inventory apply` -> `cluster config NAME MACHINE`
(the daemon's renderer).  Ad-hoc route: `cluster config NAME --endpoint URL` from the
same stored cluster.  The goldens' generate options are the inventory's cluster fields;
the stability patch is the cluster's configPatches; machines keep Talos's hostname
(hostnameMode: stable).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provisioner.cli import cli
from provisioner.talos.contract import SUPPORTED_CONTRACTS, VersionContract

from .conftest import GOLDEN_DIR, stability_patch, stability_text

BASE = """\
kind: Cluster
name: base
talosVersion: v{contract}.0
kubernetesVersion: 1.28.0
endpoint: https://base:6443
hostnameMode: stable
"""
# Talos's stability "with overrides" options, as inventory cluster fields.
OVERRIDES = """\
certSANs: [foo, bar]
allowSchedulingOnControlPlanes: true
dnsDomain: example.com
installDisk: /dev/vda
kernelArgs: [foo=bar, bar=baz]
localAPIServerPort: 5443
sysctls: {{foo: bar}}
cni: {{name: custom, urls: ["https://example.com/cni.yaml"]}}
registryMirrors: {{ghcr.io: ["https://ghcr.io.my-mirror.com"]}}
configPatches: [{patch}]
"""
MACHINES = """\
---
kind: Machine
name: base-controlplane
cluster: base
role: controlplane
macs: [52:54:00:00:00:01]
---
kind: Machine
name: base-worker
cluster: base
macs: [52:54:00:00:00:02]
"""
UKI_ON, UKI_OFF = "        grubUseUKICmdline: true\n", "        grubUseUKICmdline: false\n"


def run(settings: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(settings), *args])


def _setup(tmp_path: Path, contract: VersionContract, flavor: str) -> Path:
    settings = tmp_path / "provisioner.toml"
    settings.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    text = BASE.format(contract=contract)
    if flavor == "overrides":
        text += OVERRIDES.format(patch=json.dumps(stability_patch(contract)))
    (tmp_path / "inv.yaml").write_text(text + MACHINES)
    result = run(settings, "inventory", "apply", str(tmp_path / "inv.yaml"))
    assert result.exit_code == 0, result.output
    result = run(settings, "cluster", "secrets", "base", "--from-file", str(GOLDEN_DIR / "secrets.yaml"))
    assert result.exit_code == 0, result.output
    return settings


def _expected(contract: VersionContract, flavor: str, role: str) -> str:
    talos = stability_text(contract, f"{flavor}-{role}.yaml")
    # Talos's own output for these options is refused by Talos on metal (extraKernelArgs
    # with the UKI command line, 1.12/1.13); we write the accepted form (docs/talos.md).
    return talos.replace(UKI_ON, UKI_OFF) if flavor == "overrides" else talos


@pytest.mark.parametrize("flavor", ["base", "overrides"])
@pytest.mark.parametrize("contract", SUPPORTED_CONTRACTS, ids=str)
def test_both_routes_reproduce_talos(tmp_path: Path, contract: VersionContract, flavor: str) -> None:
    settings = _setup(tmp_path, contract, flavor)
    # Base configs have no install disk, which Talos refuses on metal: checked as container.
    mode = "metal" if flavor == "overrides" else "container"
    for role in ("controlplane", "worker"):
        result = run(settings, "cluster", "config", "base", f"base-{role}", "--mode", mode)
        assert result.exit_code == 0, result.output
        assert result.stdout == _expected(contract, flavor, role), f"inventory route, {role}"
    out = tmp_path / "adhoc"
    args = ("cluster", "config", "base", "--endpoint", "https://base:6443", "--mode", mode, "--out", str(out))
    result = run(settings, *args)
    assert result.exit_code == 0, result.output
    for role in ("controlplane", "worker"):
        assert (out / f"{role}.yaml").read_text() == _expected(contract, flavor, role), (
            f"ad-hoc route, {role}"
        )


@pytest.mark.parametrize(
    "contract",
    [c for c in SUPPORTED_CONTRACTS if c.grub_use_uki_cmdline_default and not c.multidoc_kubernetes],
    ids=str,
)
def test_talos_exact_uki_output_is_refused_with_talos_reason(
    tmp_path: Path, contract: VersionContract
) -> None:
    """Patching the UKI command line back on gives Talos's bytes, which Talos (and we) refuse on metal."""
    settings = _setup(tmp_path, contract, "overrides")
    on = "machine: {install: {grubUseUKICmdline: true}}"
    args = ("cluster", "config", "base", "--endpoint", "https://base:6443", "--patch", on)
    result = run(settings, *args, "--mode", "container", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "worker.yaml").read_text() == stability_text(contract, "overrides-worker.yaml")
    result = run(settings, *args)
    assert result.exit_code == 1
    assert "install.extraKernelArgs and install.grubUseUKICmdline can't be used together" in result.output


def test_base_configs_are_refused_on_metal_with_talos_reason(tmp_path: Path) -> None:
    settings = _setup(tmp_path, VersionContract(1, 13), "base")
    result = run(settings, "cluster", "config", "base", "base-worker")
    assert result.exit_code == 1
    assert "machine.install: either install disk or diskSelector should be defined" in result.output


EXTRA = """\
kind: Cluster
name: base
talosVersion: v{contract}.0
kubernetesVersion: 1.28.0
endpoint: https://base:6443
installDisk: /dev/vda
installImage: ghcr.io/siderolabs/installer:v{contract}.0
discovery: false
kubePrismPort: 0
---
kind: Machine
name: base-controlplane
cluster: base
role: controlplane
macs: [52:54:00:00:00:01]
---
kind: Machine
name: base-worker
cluster: base
macs: [52:54:00:00:00:02]
hostname: w-07
installImage: registry.example/installer:v{contract}.0
"""


@pytest.mark.parametrize("contract", [VersionContract(1, 13), VersionContract(1, 15)], ids=str)
def test_more_generate_options_and_machine_overrides(tmp_path: Path, contract: VersionContract) -> None:
    from provisioner.talos.yamlload import load_all

    settings = tmp_path / "provisioner.toml"
    settings.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    (tmp_path / "inv.yaml").write_text(EXTRA.format(contract=contract))
    assert run(settings, "inventory", "apply", str(tmp_path / "inv.yaml")).exit_code == 0
    secrets = run(settings, "cluster", "secrets", "base", "--from-file", str(GOLDEN_DIR / "secrets.yaml"))
    assert secrets.exit_code == 0
    configs = {}
    for role in ("controlplane", "worker"):
        result = run(settings, "cluster", "config", "base", f"base-{role}")
        assert result.exit_code == 0, result.output
        configs[role] = load_all(result.stdout)
    kinds = {role: {d.get("kind", "v1alpha1"): d for d in docs} for role, docs in configs.items()}
    if contract.multidoc_kubernetes:
        for docs in kinds.values():
            assert "DiscoveryServiceConfig" not in docs
            assert "KubePrismConfig" not in docs
        assert (
            kinds["controlplane"]["UnattendedInstallConfig"]["installer"]["image"]
            == "ghcr.io/siderolabs/installer:v1.15.0"
        )
        assert (
            kinds["worker"]["UnattendedInstallConfig"]["installer"]["image"]
            == "registry.example/installer:v1.15.0"
        )
        assert kinds["worker"]["HostnameConfig"] == {
            "apiVersion": "v1alpha1",
            "kind": "HostnameConfig",
            "hostname": "w-07",
        }
    else:
        for docs in kinds.values():
            main = docs["v1alpha1"]
            assert main["cluster"]["discovery"]["enabled"] is False
            assert "kubePrism" not in main["machine"]["features"]
        assert (
            kinds["controlplane"]["v1alpha1"]["machine"]["install"]["image"]
            == "ghcr.io/siderolabs/installer:v1.13.0"
        )
        assert (
            kinds["worker"]["v1alpha1"]["machine"]["install"]["image"] == "registry.example/installer:v1.13.0"
        )
        assert kinds["controlplane"]["HostnameConfig"] == {
            "apiVersion": "v1alpha1",
            "kind": "HostnameConfig",
            "hostname": "base-controlplane",
        }
