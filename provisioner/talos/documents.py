"""The machine-config documents Talos generates, per version contract.

This mirrors what ``talosctl gen config`` produces for a given set of options (the
``generate.Input`` of Talos's machinery): same documents, same fields, same defaults.
Machine-specific settings that ``talosctl`` has no option for (hostname, links, labels)
are applied afterwards as patches by :mod:`provisioner.talos.config`.

Every document is a plain ``dict``; key order is fixed later by
:func:`provisioner.talos.schema.canonical_order`, so only presence and values matter here.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from provisioner.talos.contract import VersionContract
from provisioner.talos.pki import CertAndKey
from provisioner.talos.secrets import SecretsBundle

__all__ = [
    "DEFAULT_KUBEPRISM_PORT",
    "GenerateOptions",
    "MachineType",
    "audit_policy",
    "doc",
    "image",
    "pair",
    "pod_security",
    "registry_documents",
    "subnets",
    "v1alpha1_legacy",
]


MachineType = Literal["controlplane", "worker"]

KUBELET_IMAGE = "ghcr.io/siderolabs/kubelet"
APISERVER_IMAGE = "registry.k8s.io/kube-apiserver"
CONTROLLER_MANAGER_IMAGE = "registry.k8s.io/kube-controller-manager"
SCHEDULER_IMAGE = "registry.k8s.io/kube-scheduler"
PROXY_IMAGE = "registry.k8s.io/kube-proxy"
DEFAULT_KUBEPRISM_PORT = 7445
DISCOVERY_ENDPOINT = "https://discovery.talos.dev/"
LABEL_CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
LABEL_EXCLUDE_LB = "node.kubernetes.io/exclude-from-external-load-balancers"
IPV4_POD_CIDR, IPV4_SERVICE_CIDR = "10.244.0.0/16", "10.96.0.0/12"
IPV6_POD_CIDR, IPV6_SERVICE_CIDR = "fc00:db8:10::/56", "fc00:db8:20::/112"


@dataclass(frozen=True, slots=True)
class GenerateOptions:
    """The subset of ``talosctl gen config`` options the provisioner uses."""

    cluster_name: str
    endpoint: str
    kubernetes_version: str
    contract: VersionContract
    secrets: SecretsBundle
    dns_domain: str = "cluster.local"
    install_disk: str = ""
    install_image: str = ""
    install_extra_kernel_args: tuple[str, ...] = ()
    additional_sans: tuple[str, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    registry_mirrors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    cni: Literal["flannel", "none", "custom"] = "flannel"
    cni_urls: tuple[str, ...] = ()
    allow_scheduling_on_control_planes: bool = False
    local_api_server_port: int = 0
    pod_subnets: tuple[str, ...] = ()
    service_subnets: tuple[str, ...] = ()
    discovery: bool = True
    kubeprism_port: int = DEFAULT_KUBEPRISM_PORT


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pair(value: CertAndKey, *, with_key: bool = True) -> dict[str, str]:
    """A v1alpha1 ``{crt, key}`` pair, base64 of the PEMs; a worker gets no key."""
    return {"crt": _b64(value.crt), "key": _b64(value.key) if with_key else ""}


def image(repository: str, version: str) -> str:
    """``repository:vX.Y.Z`` as Talos tags Kubernetes images."""
    return f"{repository}:v{version.removeprefix('v')}"


def subnets(opts: GenerateOptions) -> tuple[list[str], list[str]]:
    """Pod and service subnets: explicit ones, else Talos's defaults."""
    # Talos picks IPv6 defaults only when the endpoint string itself is an IPv6 address,
    # which a URL never is; mirrored so that the output matches talosctl.
    try:
        ipv6 = ipaddress.ip_address(opts.endpoint).version == 6
    except ValueError:
        ipv6 = False
    pod, service = (IPV6_POD_CIDR, IPV6_SERVICE_CIDR) if ipv6 else (IPV4_POD_CIDR, IPV4_SERVICE_CIDR)
    return list(opts.pod_subnets) or [pod], list(opts.service_subnets) or [service]


def doc(kind: str, **fields: Any) -> dict[str, Any]:  # noqa: ANN401 - document fields are free-form
    """A ``v1alpha1`` multi-document config document of ``kind``."""
    return {"apiVersion": "v1alpha1", "kind": kind, **fields}


def pod_security() -> dict[str, Any]:
    """Talos's default PodSecurity admission configuration."""
    return {
        "apiVersion": "pod-security.admission.config.k8s.io/v1alpha1",
        "defaults": {
            "audit": "restricted",
            "audit-version": "latest",
            "enforce": "baseline",
            "enforce-version": "latest",
            "warn": "restricted",
            "warn-version": "latest",
        },
        "exemptions": {"namespaces": ["kube-system"], "runtimeClasses": [], "usernames": []},
        "kind": "PodSecurityConfiguration",
    }


def audit_policy() -> dict[str, Any]:
    """Talos's default kube-apiserver audit policy."""
    return {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}


def _cni_v1alpha1(opts: GenerateOptions) -> dict[str, Any] | None:
    if opts.cni == "custom":
        return {"name": "custom", "urls": list(opts.cni_urls)}
    if opts.cni == "none":
        return {"name": "none"}
    return None


def registry_documents(opts: GenerateOptions) -> list[dict[str, Any]]:
    """RegistryMirrorConfig documents (contract 1.12 on)."""
    # Talos sorts registry documents by kind, then by name.
    return [
        doc(
            "RegistryMirrorConfig", name=host, endpoints=[{"url": url} for url in opts.registry_mirrors[host]]
        )
        for host in sorted(opts.registry_mirrors)
    ]


def _legacy_install(opts: GenerateOptions) -> dict[str, Any]:
    install: dict[str, Any] = {"wipe": False}
    if opts.contract.grub_use_uki_cmdline_default:
        install["grubUseUKICmdline"] = True
    if opts.install_disk:
        install["disk"] = opts.install_disk
    if opts.install_image:
        install["image"] = opts.install_image
    if opts.install_extra_kernel_args:
        install["extraKernelArgs"] = list(opts.install_extra_kernel_args)
    return install


def _legacy_features(opts: GenerateOptions) -> dict[str, Any]:
    contract = opts.contract
    features: dict[str, Any] = {}
    if not contract.hide_rbac_and_key_usage:
        features["rbac"] = True
        features["apidCheckExtKeyUsage"] = True
    if not contract.multidoc_network_config:
        features["stableHostname"] = True
    features["diskQuotaSupport"] = True
    if opts.kubeprism_port > 0:
        # An explicit port 0 turns KubePrism off, as Talos's WithKubePrismPort(0) does.
        features["kubePrism"] = {"enabled": True, "port": opts.kubeprism_port}
    features["hostDNS"] = {"enabled": True, "forwardKubeDNSToHost": True}
    return features


def _api_server_sans(opts: GenerateOptions) -> list[str]:
    """Talos's ``GetAPIServerSANs``: up to 1.11 the endpoint's host comes first."""
    sans = []
    if opts.contract.populate_cluster_sans_from_endpoint:
        # Go's url.Hostname(): no port, no brackets, case kept (urlsplit would lower it).
        host = urlsplit(opts.endpoint).netloc.rpartition("@")[2]
        host = host[1 : host.find("]")] if host.startswith("[") else host.partition(":")[0]
        if host:
            sans.append(host)
    return [*sans, *opts.additional_sans]


def v1alpha1_legacy(opts: GenerateOptions, machine_type: MachineType) -> dict[str, Any]:
    """The single big ``v1alpha1`` document of contracts up to 1.13."""
    control_plane = machine_type == "controlplane"
    secrets = opts.secrets
    pod_nets, service_nets = subnets(opts)
    contract = opts.contract
    machine: dict[str, Any] = {
        "type": machine_type,
        "token": secrets.trustd_token,
        "ca": pair(secrets.os, with_key=control_plane),
        "certSANs": list(opts.additional_sans),
        "kubelet": {
            "image": image(KUBELET_IMAGE, opts.kubernetes_version),
            "defaultRuntimeSeccompProfileEnabled": True,
            "disableManifestsDirectory": True,
        },
        "install": _legacy_install(opts),
        "features": _legacy_features(opts),
    }
    if not contract.kubespan_multidoc_config:
        # Talos writes an empty legacy network section up to 1.12 (generate/network.go).
        machine["network"] = {}
    if opts.sysctls:
        machine["sysctls"] = dict(opts.sysctls)
    if opts.registry_mirrors and not contract.multidoc_network_config:
        machine["registries"] = {
            "mirrors": {host: {"endpoints": list(urls)} for host, urls in opts.registry_mirrors.items()}
        }
    if control_plane:
        machine["nodeLabels"] = {LABEL_EXCLUDE_LB: ""}
    network: dict[str, Any] = {
        "dnsDomain": opts.dns_domain,
        "podSubnets": pod_nets,
        "serviceSubnets": service_nets,
    }
    cni = _cni_v1alpha1(opts)
    if cni is not None:
        network["cni"] = cni
    control_plane_section: dict[str, Any] = {"endpoint": opts.endpoint}
    if control_plane and opts.local_api_server_port:
        control_plane_section["localAPIServerPort"] = opts.local_api_server_port
    cluster: dict[str, Any] = {
        "id": secrets.cluster_id,
        "secret": secrets.cluster_secret,
        "controlPlane": control_plane_section,
        "clusterName": opts.cluster_name,
        "network": network,
        "token": secrets.bootstrap_token,
    }
    discovery = {"enabled": opts.discovery, "registries": {"kubernetes": {"disabled": True}, "service": {}}}
    if not control_plane:
        cluster |= {"ca": pair(secrets.k8s, with_key=False), "discovery": discovery}
        return {
            "version": "v1alpha1",
            "debug": False,
            "persist": True,
            "machine": machine,
            "cluster": cluster,
        }
    api_server: dict[str, Any] = {
        "image": image(APISERVER_IMAGE, opts.kubernetes_version),
        "admissionControl": [{"name": "PodSecurity", "configuration": pod_security()}],
        "auditPolicy": audit_policy(),
    }
    if sans := _api_server_sans(opts):
        api_server["certSANs"] = sans
    if not contract.hide_disable_psp:
        api_server["disablePodSecurityPolicy"] = True
    if secrets.secretbox_encryption_secret:
        cluster["secretboxEncryptionSecret"] = secrets.secretbox_encryption_secret
    cluster |= {
        "ca": pair(secrets.k8s),
        "aggregatorCA": pair(secrets.k8s_aggregator),
        "serviceAccount": {"key": _b64(secrets.k8s_service_account_key)},
        "apiServer": api_server,
        "controllerManager": {"image": image(CONTROLLER_MANAGER_IMAGE, opts.kubernetes_version)},
        "proxy": {"image": image(PROXY_IMAGE, opts.kubernetes_version)},
        "scheduler": {"image": image(SCHEDULER_IMAGE, opts.kubernetes_version)},
        "discovery": discovery,
        "etcd": {"ca": pair(secrets.etcd)},
    }
    if opts.allow_scheduling_on_control_planes:
        cluster["allowSchedulingOnControlPlanes"] = True
    return {"version": "v1alpha1", "debug": False, "persist": True, "machine": machine, "cluster": cluster}
