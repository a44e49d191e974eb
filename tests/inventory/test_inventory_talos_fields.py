"""Cluster and machine fields for Talos's generate options, and their checks."""

from __future__ import annotations

from pathlib import Path

from provisioner.inventory import Inventory, load_inventory

CLUSTER = """\
kind: Cluster
name: c1
talosVersion: {version}
kubernetesVersion: 1.33.0
endpoint: https://10.0.0.10:6443
installDisk: /dev/sda
installImage: factory.talos.dev/metal-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:v1.13.0
kernelArgs: [net.ifnames=0]
sysctls: {{vm.max_map_count: 262144}}
localAPIServerPort: 7443
hostnameMode: stable
discovery: false
kubePrismPort: 0
---
kind: Machine
name: m1
cluster: c1
macs: [52:54:00:00:00:01]
hostname: {hostname}
hostnameMode: {mode}
installImage: ghcr.io/siderolabs/installer:v1.13.0
"""


def _load(
    tmp_path: Path, version: str = "v1.13.0", hostname: str = "", mode: str = "static"
) -> tuple[Path, Inventory]:
    path = tmp_path / "inv.yaml"
    path.write_text(CLUSTER.format(version=version, hostname=hostname or "null", mode=mode))
    return path, load_inventory([path])


def test_generate_option_fields_are_accepted(tmp_path: Path) -> None:
    _, inv = _load(tmp_path)
    assert inv.problems == [] and inv.warnings == []
    cluster = inv.clusters["c1"].spec
    assert cluster.sysctls == {"vm.max_map_count": "262144"}
    assert (cluster.local_api_server_port, cluster.hostname_mode, cluster.discovery) == (
        7443,
        "stable",
        False,
    )
    assert cluster.kube_prism_port == 0
    machine = inv.machines["m1"].spec
    assert (machine.hostname_mode, machine.install_image) == (
        "static",
        "ghcr.io/siderolabs/installer:v1.13.0",
    )


def test_stable_hostname_mode_refuses_a_static_hostname(tmp_path: Path) -> None:
    path, inv = _load(tmp_path, hostname="n1", mode="stable")
    message = (
        f"{path}:15: machine m1: hostname 'n1' with hostnameMode stable "
        "(Talos refuses a static hostname together with auto: stable)"
    )
    assert inv.problems == [message]


def test_kernel_args_under_114_warn_that_they_reach_the_pxe_boot_only(tmp_path: Path) -> None:
    path, inv = _load(tmp_path, version="v1.14.0")
    assert inv.problems == []
    [warning] = inv.warnings
    assert warning.startswith(f"{path}:3: cluster c1: kernelArgs reach the PXE boot only")


def test_labels_and_taints_talos_would_refuse_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "kind: Machine\nname: m1\nmacs: [52:54:00:00:00:01]\n"
        "labels: {rack: r 1, topology.kubernetes.io/zone: z1}\n"
        "taints: [{key: a/b/c, effect: NoSchedule}]\n"
    )
    inv = load_inventory([path])
    assert inv.problems == [
        f"{path}:1: machine m1: invalid node labels: label value 'r 1' is invalid",
        f"{path}:1: machine m1: invalid node taints: invalid format: too many slashes: 'a/b/c'",
    ]
