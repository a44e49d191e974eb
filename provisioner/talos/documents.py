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

from provisioner.talos.contract import VersionContract
from provisioner.talos.pki import CertAndKey
from provisioner.talos.secrets import SecretsBundle

__all__ = ["GenerateOptions", "MachineType", "base_documents"]


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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _pair(value: CertAndKey, *, with_key: bool = True) -> dict[str, str]:
    return {"crt": _b64(value.crt), "key": _b64(value.key) if with_key else ""}


def _image(repository: str, version: str) -> str:
    return f"{repository}:v{version.removeprefix('v')}"


def _subnets(opts: GenerateOptions) -> tuple[list[str], list[str]]:
    """Pod and service subnets: explicit ones, else Talos's defaults."""
    # Talos picks IPv6 defaults only when the endpoint string itself is an IPv6 address,
    # which a URL never is; mirrored so that the output matches talosctl.
    try:
        ipv6 = ipaddress.ip_address(opts.endpoint).version == 6
    except ValueError:
        ipv6 = False
    pod, service = (IPV6_POD_CIDR, IPV6_SERVICE_CIDR) if ipv6 else (IPV4_POD_CIDR, IPV4_SERVICE_CIDR)
    return list(opts.pod_subnets) or [pod], list(opts.service_subnets) or [service]


def _doc(kind: str, **fields: Any) -> dict[str, Any]:  # noqa: ANN401 - document fields are free-form
    return {"apiVersion": "v1alpha1", "kind": kind, **fields}


def _pod_security() -> dict[str, Any]:
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


def _audit_policy() -> dict[str, Any]:
    return {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Metadata"}]}


def _cni_v1alpha1(opts: GenerateOptions) -> dict[str, Any] | None:
    if opts.cni == "custom":
        return {"name": "custom", "urls": list(opts.cni_urls)}
    if opts.cni == "none":
        return {"name": "none"}
    return None


def _registry_documents(opts: GenerateOptions) -> list[dict[str, Any]]:
    # Talos sorts registry documents by kind, then by name.
    return [
        _doc(
            "RegistryMirrorConfig", name=host, endpoints=[{"url": url} for url in opts.registry_mirrors[host]]
        )
        for host in sorted(opts.registry_mirrors)
    ]


def _v1alpha1_legacy(opts: GenerateOptions, machine_type: MachineType) -> dict[str, Any]:
    """The single big ``v1alpha1`` document of contracts up to 1.13."""
    control_plane = machine_type == "controlplane"
    secrets = opts.secrets
    pod_nets, service_nets = _subnets(opts)
    install: dict[str, Any] = {"wipe": False, "grubUseUKICmdline": True}
    if opts.install_disk:
        install["disk"] = opts.install_disk
    if opts.install_image:
        install["image"] = opts.install_image
    if opts.install_extra_kernel_args:
        install["extraKernelArgs"] = list(opts.install_extra_kernel_args)
    machine: dict[str, Any] = {
        "type": machine_type,
        "token": secrets.trustd_token,
        "ca": _pair(secrets.os, with_key=control_plane),
        "certSANs": list(opts.additional_sans),
        "kubelet": {
            "image": _image(KUBELET_IMAGE, opts.kubernetes_version),
            "defaultRuntimeSeccompProfileEnabled": True,
            "disableManifestsDirectory": True,
        },
        "install": install,
        "features": {
            "diskQuotaSupport": True,
            "kubePrism": {"enabled": True, "port": DEFAULT_KUBEPRISM_PORT},
            "hostDNS": {"enabled": True, "forwardKubeDNSToHost": True},
        },
    }
    if opts.sysctls:
        machine["sysctls"] = dict(opts.sysctls)
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
    discovery = {"enabled": True, "registries": {"kubernetes": {"disabled": True}, "service": {}}}
    if not control_plane:
        cluster |= {"ca": _pair(secrets.k8s, with_key=False), "discovery": discovery}
        return {
            "version": "v1alpha1",
            "debug": False,
            "persist": True,
            "machine": machine,
            "cluster": cluster,
        }
    api_server: dict[str, Any] = {
        "image": _image(APISERVER_IMAGE, opts.kubernetes_version),
        "admissionControl": [{"name": "PodSecurity", "configuration": _pod_security()}],
        "auditPolicy": _audit_policy(),
    }
    if opts.additional_sans:
        api_server["certSANs"] = list(opts.additional_sans)
    if secrets.secretbox_encryption_secret:
        cluster["secretboxEncryptionSecret"] = secrets.secretbox_encryption_secret
    cluster |= {
        "ca": _pair(secrets.k8s),
        "aggregatorCA": _pair(secrets.k8s_aggregator),
        "serviceAccount": {"key": _b64(secrets.k8s_service_account_key)},
        "apiServer": api_server,
        "controllerManager": {"image": _image(CONTROLLER_MANAGER_IMAGE, opts.kubernetes_version)},
        "proxy": {"image": _image(PROXY_IMAGE, opts.kubernetes_version)},
        "scheduler": {"image": _image(SCHEDULER_IMAGE, opts.kubernetes_version)},
        "discovery": discovery,
        "etcd": {"ca": _pair(secrets.etcd)},
    }
    if opts.allow_scheduling_on_control_planes:
        cluster["allowSchedulingOnControlPlanes"] = True
    return {"version": "v1alpha1", "debug": False, "persist": True, "machine": machine, "cluster": cluster}


def _kubernetes_universal(opts: GenerateOptions, *, control_plane: bool) -> list[dict[str, Any]]:
    secrets = opts.secrets
    pod_nets, service_nets = _subnets(opts)
    node: dict[str, Any] = {"nodeIP": {}}
    if control_plane:
        node["labels"] = {LABEL_CONTROL_PLANE: "", LABEL_EXCLUDE_LB: ""}
        if not opts.allow_scheduling_on_control_planes:
            node["taints"] = {LABEL_CONTROL_PLANE: "NoSchedule"}
    if control_plane:
        ca: dict[str, Any] = {
            "issuingCA": {"cert": secrets.k8s.crt.decode(), "key": secrets.k8s.key.decode()}
        }
    else:
        ca = {"acceptedCAs": [secrets.k8s.crt.decode()]}
    return [
        _doc("KubeClusterConfig", clusterName=opts.cluster_name, endpoint=opts.endpoint),
        _doc("KubeNodeConfig", **node),
        _doc(
            "KubeletConfig",
            image=_image(KUBELET_IMAGE, opts.kubernetes_version),
            config={},
            defaultRuntimeSeccompProfileEnabled=True,
        ),
        _doc(
            "KubeNetworkConfig", dnsDomain=opts.dns_domain, podSubnets=pod_nets, serviceSubnets=service_nets
        ),
        _doc("KubeAPIServerCAConfig", **ca),
        _doc("KubePrismConfig", port=DEFAULT_KUBEPRISM_PORT),
    ]


def _kubernetes_control_plane(opts: GenerateOptions) -> list[dict[str, Any]]:
    secrets, version = opts.secrets, opts.kubernetes_version
    aggregator = {"cert": secrets.k8s_aggregator.crt.decode(), "key": secrets.k8s_aggregator.key.decode()}
    providers: list[Any] = []
    # Provider names and order must match the pre-1.14 kube-apiserver rendering so that a
    # cluster regenerated under 1.14 can still decrypt its secrets.
    if secrets.secretbox_encryption_secret:
        keys = [{"name": "key2", "secret": secrets.secretbox_encryption_secret}]
        providers.append({"secretbox": {"keys": keys}})
    if secrets.aescbc_encryption_secret:
        providers.append(
            {"secretbox": {"keys": [{"name": "key1", "secret": secrets.aescbc_encryption_secret}]}}
        )
    api_server: dict[str, Any] = {"image": _image(APISERVER_IMAGE, version)}
    if opts.local_api_server_port:
        api_server["apiPort"] = opts.local_api_server_port
    if opts.additional_sans:
        api_server["certExtraSANs"] = list(opts.additional_sans)
    authentication = {
        "anonymous": {
            "conditions": [{"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"}],
            "enabled": True,
        },
        "jwt": [],
    }
    docs = [
        _doc("KubeAggregatorCAConfig", issuingCA=aggregator),
        _doc("KubeAdmissionControlConfig", name="PodSecurity", configuration=_pod_security()),
        _doc("KubeAuditPolicyConfig", configuration=_audit_policy()),
        _doc("KubeAuthenticationConfig", configuration=authentication),
        _doc("KubeAuthorizerConfig", name="node", type="Node"),
        _doc("KubeAuthorizerConfig", name="rbac", type="RBAC"),
        _doc(
            "KubeEtcdEncryptionConfig",
            config={"resources": [{"providers": providers, "resources": ["secrets"]}]},
        ),
        _doc(
            "KubeServiceAccountConfig",
            issuer={"privateKey": secrets.k8s_service_account_key.decode(), "issuerURL": opts.endpoint},
        ),
        _doc("KubeAPIServerConfig", **api_server),
        _doc("KubeControllerManagerConfig", image=_image(CONTROLLER_MANAGER_IMAGE, version)),
        _doc("KubeSchedulerConfig", image=_image(SCHEDULER_IMAGE, version), config={}),
        _doc("KubeProxyConfig", image=_image(PROXY_IMAGE, version), config={}),
    ]
    if opts.cni == "flannel":
        docs.append(_doc("KubeFlannelCNIConfig", backendType="vxlan", backendPort=4789))
    docs.append(_doc("KubeCoreDNSConfig", enabled=True))
    if opts.cni == "custom":
        for index, url in enumerate(opts.cni_urls):
            name = "custom-cni" if index == 0 else f"custom-cni-{index + 1}"
            docs.append(_doc("KubeExternalManifestConfig", name=name, url=url))
    return docs


def _multidoc(opts: GenerateOptions, machine_type: MachineType) -> list[dict[str, Any]]:
    """Contract 1.14 and later: a slim ``v1alpha1`` document plus ``kind:`` documents."""
    control_plane = machine_type == "controlplane"
    secrets = opts.secrets
    cluster: dict[str, Any] = {"token": secrets.bootstrap_token}
    if control_plane:
        cluster["etcd"] = {"ca": _pair(secrets.etcd)}
    v1alpha1 = {
        "version": "v1alpha1",
        "debug": False,
        "persist": True,
        "machine": {
            "type": machine_type,
            "token": secrets.trustd_token,
            "ca": _pair(secrets.os, with_key=control_plane),
            "certSANs": list(opts.additional_sans),
            "features": {"diskQuotaSupport": True},
        },
        "cluster": cluster,
    }
    docs: list[dict[str, Any]] = [
        v1alpha1,
        _doc("DiscoveryServiceConfig", name="default", endpoint=DISCOVERY_ENDPOINT),
        _doc("DiscoveryIdentityConfig", clusterID=secrets.cluster_id, clusterSecret=secrets.cluster_secret),
    ]
    if opts.install_disk:
        installer = {"image": opts.install_image} if opts.install_image else {}
        provisioning = {"diskSelector": {"match": f'disk.dev_path == "{opts.install_disk}"'}, "wipe": False}
        docs.append(_doc("UnattendedInstallConfig", installer=installer, provisioning=provisioning))
    docs.append(_doc("ResolverConfig", hostDNS={"enabled": True, "forwardKubeDNSToHost": True}))
    if opts.sysctls:
        docs.append(_doc("SysctlConfig", params=dict(opts.sysctls)))
    docs += [
        _doc("VolumeConfig", name="EPHEMERAL", mount={"secure": True}),
        _doc("FilesystemTrimConfig", interval="168h0m0s"),
        _doc("SecurityProfileConfig", workloadIsolation=True),
        *_registry_documents(opts),
        _doc("HostnameConfig", auto="stable"),
        *_kubernetes_universal(opts, control_plane=control_plane),
    ]
    if control_plane:
        docs += _kubernetes_control_plane(opts)
    return docs


def base_documents(opts: GenerateOptions, machine_type: MachineType) -> list[dict[str, Any]]:
    """The documents ``talosctl gen config`` would generate for ``machine_type``."""
    if opts.contract.multidoc_kubernetes:
        return _multidoc(opts, machine_type)
    return [
        _v1alpha1_legacy(opts, machine_type),
        *_registry_documents(opts),
        _doc("HostnameConfig", auto="stable"),
    ]
