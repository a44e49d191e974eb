"""Talos's multi-document and container rules (``Validate`` of document kinds, ``container/validate.go``)."""

from __future__ import annotations

from collections.abc import Iterator

from provisioner.talos.rulehelpers import CONTROL_PLANE_TYPES, Doc, get, machine_type_of, of_kind

__all__ = [
    "control_plane_only_documents",
    "discovery_identity",
    "duplicate_documents",
    "etcd_encryption",
    "hostname_config",
    "unattended_install",
]


def hostname_config(main: Doc, docs: list[Doc], _mode: str) -> Iterator[str]:
    """HostnameConfigV1Alpha1.Validate and its V1Alpha1ConflictValidate."""
    for doc in of_kind(docs, "HostnameConfig"):
        auto, hostname = doc.get("auto"), str(doc.get("hostname") or "")
        if auto is None and not hostname:
            yield "HostnameConfig: either 'auto' or 'hostname' must be set"
        if (auto or "off") != "off" and hostname:
            yield "HostnameConfig: 'auto' and 'hostname' cannot be set at the same time"
        if auto not in (None, "off", "stable"):
            yield f"HostnameConfig: invalid value for 'auto': {auto}"
        if hostname:
            if len(hostname) > 253:
                yield f"HostnameConfig: fqdn is too long: {len(hostname)}"
            label = hostname.partition(".")[0]
            if not 0 < len(label) <= 63:
                yield f'HostnameConfig: invalid hostname "{label}"'
        if get(main, "machine", "network", "hostname"):
            yield "HostnameConfig: static hostname is already set in v1alpha1 config"


def unattended_install(_main: Doc, docs: list[Doc], _mode: str) -> Iterator[str]:
    """UnattendedInstallConfigV1Alpha1.Validate: a disk selector is required."""
    for doc in of_kind(docs, "UnattendedInstallConfig"):
        if not get(doc, "provisioning", "diskSelector", "match"):
            yield "UnattendedInstallConfig: provisioning.volumeSelector.match is required"


def duplicate_documents(main: Doc, docs: list[Doc], _mode: str) -> Iterator[str]:
    """container.New: one v1alpha1 document, no two documents with the same kind and name."""
    if sum(1 for doc in docs if "kind" not in doc) > 1:
        yield "config: duplicate v1alpha1.Config"
    seen: set[str] = set()
    for doc in docs:
        if "kind" not in doc:
            continue
        ident = f"{doc['kind']}/{doc.get('name', '')}"
        if ident in seen:
            yield f"config: duplicate document: {ident}"
        seen.add(ident)
    del main


def discovery_identity(main: Doc, docs: list[Doc], _mode: str) -> Iterator[str]:
    """validateContainer: discovery needs a cluster ID and secret."""
    if not of_kind(docs, "DiscoveryServiceConfig"):
        return
    identity = next(iter(of_kind(docs, "DiscoveryIdentityConfig")), None)
    cluster_id = get(identity, "clusterID") or get(main, "cluster", "id")
    secret = get(identity, "clusterSecret") or get(main, "cluster", "secret")
    if not cluster_id:
        yield (
            "config: cluster ID (.cluster.id or DiscoveryIdentityConfig) should be set when cluster "
            "discovery (DiscoveryServiceConfig) is enabled"
        )
    if not secret:
        yield (
            "config: cluster secret (.cluster.secret or DiscoveryIdentityConfig) should be set when cluster "
            "discovery (DiscoveryServiceConfig) is enabled"
        )


# ControlplaneOnlyDocument() implementers in pkg/machinery/config/types/k8s.
_CONTROL_PLANE_ONLY = frozenset(
    {
        "KubeAdmissionControlConfig",
        "KubeAggregatorCAConfig",
        "KubeAPIServerConfig",
        "KubeAuditPolicyConfig",
        "KubeAuthenticationConfig",
        "KubeAuthorizerConfig",
        "KubeControllerManagerConfig",
        "KubeCoreDNSConfig",
        "KubeEtcdEncryptionConfig",
        "KubeFlannelCNIConfig",
        "KubeProxyConfig",
        "KubeSchedulerConfig",
        "KubeServiceAccountConfig",
        "KubeTalosAPIAccessConfig",
    }
)


def control_plane_only_documents(main: Doc, docs: list[Doc], _mode: str) -> Iterator[str]:
    """validateContainer: control-plane-only kinds on a worker."""
    kinds = sorted({str(doc["kind"]) for doc in docs if doc.get("kind") in _CONTROL_PLANE_ONLY})
    if kinds and machine_type_of(main) not in CONTROL_PLANE_TYPES:
        # Go prints the sorted kinds with %v: [A B].
        yield (
            "config: the following document kinds are only allowed on control plane machines: "
            f"[{' '.join(kinds)}]"
        )


def etcd_encryption(main: Doc, docs: list[Doc], _mode: str) -> Iterator[str]:
    """validateContainer: a control plane running kube-apiserver needs etcd encryption."""
    if machine_type_of(main) not in CONTROL_PLANE_TYPES or not of_kind(docs, "KubeAPIServerCAConfig"):
        return
    legacy = get(main, "cluster", "secretboxEncryptionSecret") or get(
        main, "cluster", "aescbcEncryptionSecret"
    )
    if not legacy and not of_kind(docs, "KubeEtcdEncryptionConfig"):
        yield "config: etcd encryption config is required for control plane machines running kube-apiserver"
