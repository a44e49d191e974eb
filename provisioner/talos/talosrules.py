"""Talos's own validation rules, rule by rule, with Talos's messages.

Re-implemented (not copied) from siderolabs/talos ``pkg/machinery/config/types/v1alpha1/
v1alpha1_validation.go`` (``Config.Validate``, ``ClusterConfig.Validate``, ``ValidateCNI``,
the network device checks, ``KubeletConfig.Validate``, ``EtcdConfig.Validate``), the
multi-document ``Validate`` methods (HostnameConfig, UnattendedInstallConfig) and the
container checks (``container/container.go``, ``container/validate.go``), main branch
at v1.15 development (commit ad8823176), which validates configs of every supported
contract.  Each finding is ``section: message`` where ``message`` is Talos's text, so an
operator can search Talos's source or docs for it.  docs/talos.md lists which rules are
covered and which are not.

Every rule is a function of (v1alpha1 document, documents by kind, runtime mode); the
table :data:`RULES` is what :func:`check_talos_rules` runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from provisioner.talos.rulehelpers import (
    CONTROL_PLANE_TYPES,
    Doc,
    Rule,
    endpoint_problem,
    get,
    is_subnet_or_address,
    machine_type_of,
)
from provisioner.talos.rules_labels import node_labels
from provisioner.talos.rules_multidoc import (
    control_plane_only_documents,
    discovery_identity,
    duplicate_documents,
    etcd_encryption,
    hostname_config,
    unattended_install,
)
from provisioner.talos.rules_network import network_devices, vip_on_worker

__all__ = ["RULES", "check_talos_rules"]

# Talos's isValidDNSName.
_DNS_NAME = re.compile(r"^([a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?$")
# kubelet.ProtectedConfigurationFields (pkg/machinery/kubelet).
_KUBELET_PROTECTED = (
    "authentication",
    "authorization",
    "cgroupDriver",
    "hairpinMode",
    "rotateCertificates",
    "serverTLSBootstrap",
    "staticPodPath",
    "staticPodURL",
    "containerRuntimeEndpoint",
)

# --- Config.Validate -----------------------------------------------------------------


def machine_required(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    if not isinstance(main.get("machine"), Mapping):
        yield "machine: machine instructions are required"


def cluster_required(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    if not isinstance(main.get("cluster"), Mapping):
        yield "cluster: cluster instructions are required"


def install_disk_on_metal(main: Doc, _docs: list[Doc], mode: str) -> Iterator[str]:
    install = get(main, "machine", "install")
    if (
        mode == "metal"
        and isinstance(install, Mapping)
        and not install.get("disk")
        and not install.get("diskSelector")
    ):
        yield "machine.install: either install disk or diskSelector should be defined"


def install_kernel_args_vs_uki(main: Doc, _docs: list[Doc], mode: str) -> Iterator[str]:
    install = get(main, "machine", "install")
    if (
        mode == "metal"
        and isinstance(install, Mapping)
        and install.get("extraKernelArgs")
        and install.get("grubUseUKICmdline")
    ):
        yield "machine.install: install.extraKernelArgs and install.grubUseUKICmdline can't be used together"


def host_dns_forward(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    host_dns = get(main, "machine", "features", "hostDNS")
    if isinstance(host_dns, Mapping) and host_dns.get("forwardKubeDNSToHost") and not host_dns.get("enabled"):
        yield (
            "machine.features.hostDNS: feature hostDNS.forwardKubeDNSToHost requires hostDNS.enabled "
            "to be true (.machine.features.hostDNS)"
        )


def machine_type(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    value = get(main, "machine", "type")
    if isinstance(main.get("machine"), Mapping) and machine_type_of(main) is None:
        yield f'machine.type: unknown machine type "{value}"'


def ca_present(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    if (
        isinstance(main.get("machine"), Mapping)
        and not get(main, "machine", "ca")
        and not get(main, "machine", "acceptedCAs")
    ):
        yield "machine.ca: issuing CA or some accepted CAs are required (.machine.ca, machine.acceptedCAs)"


def control_plane_ca_key(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    if machine_type_of(main) not in CONTROL_PLANE_TYPES:
        return
    ca = get(main, "machine", "ca")
    if not ca:
        yield "machine.ca: issuing CA is required (.machine.ca)"
    elif not get(ca, "key"):
        yield "machine.ca: issuing CA key is required for controlplane nodes (.machine.ca.key)"


def worker_keys(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    if machine_type_of(main) != "worker":
        return
    ca = get(main, "machine", "ca")
    if isinstance(ca, Mapping):
        if ca.get("key"):
            yield (
                "machine.ca: issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)"
            )
        if not ca.get("crt") and not get(main, "machine", "acceptedCAs"):
            yield (
                "machine.ca: trusted CA certificates are required on non-controlplane nodes "
                "(.machine.ca.crt, .machine.acceptedCAs)"
            )
    if get(main, "cluster", "ca", "key"):
        yield (
            "cluster.ca: issuing Kubernetes API CA key is not allowed on non-controlplane nodes (.cluster.ca)"
        )
        yield "cluster.ca: cluster CA key is not allowed on non-controlplane nodes (.cluster.ca)"


def cni(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    network = get(main, "cluster", "network")
    if machine_type_of(main) not in CONTROL_PLANE_TYPES or not isinstance(network, Mapping):
        return
    config = network.get("cni") or {}
    name, urls = config.get("name") or "flannel", config.get("urls") or []
    flannel = config.get("flannel") or {}
    if name in ("flannel", "none") and urls:
        yield f'cluster.network.cni: "urls" field should be empty for "{name}" CNI'
    if name in ("none", "custom"):
        if flannel.get("extraArgs"):
            yield f'cluster.network.cni: "flanneldExtraArgs" field should be empty for "{name}" CNI'
        if flannel.get("kubeNetworkPoliciesEnabled"):
            yield (
                'cluster.network.cni: "flannelKubeNetworkPoliciesEnabled" '
                f'should not be enabled for "{name}" CNI'
            )
    if name == "custom":
        for url in urls:
            if problem := endpoint_problem(str(url)):
                yield f"cluster.network.cni: {problem}"
    elif name not in ("flannel", "none"):
        yield 'cluster.network.cni: cni name should be one of ["flannel", "custom", "none"]'


def disk_partitions(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    for index, disk in enumerate(get(main, "machine", "disks") or []):
        if disk is None:
            yield f"machine.disks[{index}]: machine.disks[{index}] is null"
            continue
        partitions = disk.get("partitions") or []
        for number, partition in enumerate(partitions):
            if not get(partition, "size") and number != len(partitions) - 1:
                yield (
                    f'machine.disks[{index}]: partition for disk "{disk.get("device", "")}" is set to occupy '
                    "full disk, but it's not the last partition in the list"
                )


def kubelet(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    config = get(main, "machine", "kubelet")
    if not isinstance(config, Mapping):
        return
    for cidr in get(config, "nodeIP", "validSubnets") or []:
        if not is_subnet_or_address(str(cidr).removeprefix("!")):
            yield f'machine.kubelet: kubelet nodeIP subnet is not valid: "{cidr}"'
    extra = config.get("extraConfig") or {}
    for field in _KUBELET_PROTECTED:
        if field in extra:
            yield f'machine.kubelet: kubelet configuration field "{field}" can\'t be overridden'


def install_extensions(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    seen: set[str] = set()
    for extension in get(main, "machine", "install", "extensions") or []:
        image = str(get(extension, "image") or "")
        if image in seen:
            yield f'machine.install: duplicate system extension "{image}"'
        seen.add(image)


def talos_api_access(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    access = get(main, "machine", "features", "kubernetesTalosAPIAccess")
    if (
        isinstance(access, Mapping)
        and access.get("enabled")
        and machine_type_of(main) not in CONTROL_PLANE_TYPES
    ):
        yield (
            "machine.features.kubernetesTalosAPIAccess: feature Kubernetes Talos API Access can only be "
            "enabled on control plane machines"
        )


def persist(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    if main.get("persist") is False:
        yield "persist: .persist should be enabled"


def registries_not_null(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    registries = get(main, "machine", "registries") or {}
    for section in ("config", "mirrors"):
        for key, value in (registries.get(section) or {}).items():
            if value is None:
                yield f'machine.registries: registries.{section}["{key}"] is null'


# --- ClusterConfig.Validate ------------------------------------------------------------


def control_plane_endpoint(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    control_plane = get(main, "cluster", "controlPlane")
    if not isinstance(control_plane, Mapping):
        return
    endpoint = control_plane.get("endpoint")
    if not endpoint:
        yield "cluster.controlPlane: cluster controlplane endpoint is required"
    elif problem := endpoint_problem(str(endpoint)):
        yield f"cluster.controlPlane.endpoint: invalid controlplane endpoint: {problem}"


def dns_domain(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    domain = get(main, "cluster", "network", "dnsDomain")
    if domain and (len(str(domain)) - str(domain).count(".") > 255 or not _DNS_NAME.match(str(domain))):
        yield f'cluster.network.dnsDomain: "{domain}" is not a valid DNS name'


def etcd(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    config = get(main, "cluster", "etcd")
    if not isinstance(config, Mapping):
        return
    if machine_type_of(main) not in CONTROL_PLANE_TYPES:
        yield "cluster.etcd: etcd config is only allowed on control plane machines"
        return
    if not config.get("ca"):
        yield "cluster.etcd: key/cert combination should not be empty"
    if config.get("subnet") and config.get("advertisedSubnets"):
        yield "cluster.etcd: etcd subnet can't be set when advertised subnets are set"
    for field, what in (("advertisedSubnets", "advertised"), ("listenSubnets", "listen")):
        for cidr in config.get(field) or []:
            if not is_subnet_or_address(str(cidr).removeprefix("!")):
                yield f'cluster.etcd: etcd {what} subnet is not valid: "{cidr}"'


def inline_manifests(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    seen: set[str] = set()
    for manifest in get(main, "cluster", "inlineManifests") or []:
        name = str(get(manifest, "name") or "")
        if not name.strip():
            yield "cluster.inlineManifests: inline manifest name can't be empty"
        if name in seen:
            yield f'cluster.inlineManifests: inline manifest name "{name}" is duplicate'
        seen.add(name)


def external_cloud_provider(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    ecp = get(main, "cluster", "externalCloudProvider")
    if not isinstance(ecp, Mapping):
        return
    manifests = ecp.get("manifests") or []
    if not ecp.get("enabled") and manifests:
        yield "cluster.externalCloudProvider: external cloud provider is disabled, but manifests are provided"
        return
    for url in manifests:
        if problem := endpoint_problem(str(url)):
            yield (
                "cluster.externalCloudProvider: "
                f'invalid external cloud provider manifest url "{url}": {problem}'
            )


def discovery(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    config = get(main, "cluster", "discovery")
    if not isinstance(config, Mapping) or not config.get("enabled"):
        return
    service = get(config, "registries", "service") or {}
    if service.get("disabled"):
        return
    endpoint = urlsplit(str(service.get("endpoint") or "https://discovery.talos.dev/"))
    if endpoint.path not in ("", "/"):
        yield "cluster.discovery: cluster discovery service path should be empty"
    if not get(main, "cluster", "id"):
        yield "cluster.discovery: cluster discovery service requires .cluster.id"
    if not get(main, "cluster", "secret"):
        yield "cluster.discovery: cluster discovery service requires .cluster.secret"


_MULTIDOC_RULES: tuple[Rule, ...] = (
    hostname_config,
    unattended_install,
    duplicate_documents,
    discovery_identity,
    control_plane_only_documents,
    etcd_encryption,
)
RULES: tuple[Rule, ...] = (
    machine_required,
    cluster_required,
    install_disk_on_metal,
    install_kernel_args_vs_uki,
    host_dns_forward,
    machine_type,
    ca_present,
    control_plane_ca_key,
    worker_keys,
    cni,
    vip_on_worker,
    network_devices,
    disk_partitions,
    kubelet,
    install_extensions,
    node_labels,
    talos_api_access,
    persist,
    registries_not_null,
    control_plane_endpoint,
    dns_domain,
    etcd,
    inline_manifests,
    external_cloud_provider,
    discovery,
    *_MULTIDOC_RULES,
)


def check_talos_rules(docs: list[Doc], mode: str) -> list[str]:
    """Run every rule of :data:`RULES`; ``mode`` is Talos's runtime mode (metal, cloud, container)."""
    main = next((doc for doc in docs if "kind" not in doc), None)
    # Without a v1alpha1 document Talos runs only the document and container rules.
    rules = RULES if main is not None else _MULTIDOC_RULES
    return [finding for rule in rules for finding in rule(main or {}, docs, mode)]
