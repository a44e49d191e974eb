"""The ``kind:`` documents Talos generates from contract 1.14 on (multi-document config).

Split from :mod:`provisioner.talos.documents` (shared helpers, legacy v1alpha1 document)
for size; :func:`base_documents` picks the shape by contract.  Mirrors Talos's
``generate/init.go``, ``worker.go`` and ``kubernetes.go``.
"""

from __future__ import annotations

from typing import Any

from provisioner.talos.documents import (
    APISERVER_IMAGE,
    CONTROLLER_MANAGER_IMAGE,
    DISCOVERY_ENDPOINT,
    KUBELET_IMAGE,
    LABEL_CONTROL_PLANE,
    LABEL_EXCLUDE_LB,
    PROXY_IMAGE,
    SCHEDULER_IMAGE,
    GenerateOptions,
    MachineType,
    audit_policy,
    doc,
    image,
    pair,
    pod_security,
    registry_documents,
    subnets,
    v1alpha1_legacy,
)

__all__ = ["base_documents"]


def _kubernetes_universal(opts: GenerateOptions, *, control_plane: bool) -> list[dict[str, Any]]:
    secrets = opts.secrets
    pod_nets, service_nets = subnets(opts)
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
    docs = [
        doc("KubeClusterConfig", clusterName=opts.cluster_name, endpoint=opts.endpoint),
        doc("KubeNodeConfig", **node),
        doc(
            "KubeletConfig",
            image=image(KUBELET_IMAGE, opts.kubernetes_version),
            config={},
            defaultRuntimeSeccompProfileEnabled=True,
        ),
        doc("KubeNetworkConfig", dnsDomain=opts.dns_domain, podSubnets=pod_nets, serviceSubnets=service_nets),
        doc("KubeAPIServerCAConfig", **ca),
    ]
    if opts.kubeprism_port > 0:
        docs.append(doc("KubePrismConfig", port=opts.kubeprism_port))
    return docs


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
    api_server: dict[str, Any] = {"image": image(APISERVER_IMAGE, version)}
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
        doc("KubeAggregatorCAConfig", issuingCA=aggregator),
        doc("KubeAdmissionControlConfig", name="PodSecurity", configuration=pod_security()),
        doc("KubeAuditPolicyConfig", configuration=audit_policy()),
        doc("KubeAuthenticationConfig", configuration=authentication),
        doc("KubeAuthorizerConfig", name="node", type="Node"),
        doc("KubeAuthorizerConfig", name="rbac", type="RBAC"),
        doc(
            "KubeEtcdEncryptionConfig",
            config={"resources": [{"providers": providers, "resources": ["secrets"]}]},
        ),
        doc(
            "KubeServiceAccountConfig",
            issuer={"privateKey": secrets.k8s_service_account_key.decode(), "issuerURL": opts.endpoint},
        ),
        doc("KubeAPIServerConfig", **api_server),
        doc("KubeControllerManagerConfig", image=image(CONTROLLER_MANAGER_IMAGE, version)),
        doc("KubeSchedulerConfig", image=image(SCHEDULER_IMAGE, version), config={}),
        doc("KubeProxyConfig", image=image(PROXY_IMAGE, version), config={}),
    ]
    if opts.cni == "flannel":
        docs.append(doc("KubeFlannelCNIConfig", backendType="vxlan", backendPort=4789))
    docs.append(doc("KubeCoreDNSConfig", enabled=True))
    if opts.cni == "custom":
        for index, url in enumerate(opts.cni_urls):
            name = "custom-cni" if index == 0 else f"custom-cni-{index + 1}"
            docs.append(doc("KubeExternalManifestConfig", name=name, url=url))
    return docs


def _multidoc(opts: GenerateOptions, machine_type: MachineType) -> list[dict[str, Any]]:
    """Contract 1.14 and later: a slim ``v1alpha1`` document plus ``kind:`` documents."""
    control_plane = machine_type == "controlplane"
    secrets = opts.secrets
    cluster: dict[str, Any] = {"token": secrets.bootstrap_token}
    if control_plane:
        cluster["etcd"] = {"ca": pair(secrets.etcd)}
    v1alpha1 = {
        "version": "v1alpha1",
        "debug": False,
        "persist": True,
        "machine": {
            "type": machine_type,
            "token": secrets.trustd_token,
            "ca": pair(secrets.os, with_key=control_plane),
            "certSANs": list(opts.additional_sans),
            "features": {"diskQuotaSupport": True},
        },
        "cluster": cluster,
    }
    docs: list[dict[str, Any]] = [v1alpha1]
    if opts.discovery:
        docs.append(doc("DiscoveryServiceConfig", name="default", endpoint=DISCOVERY_ENDPOINT))
    docs.append(
        doc("DiscoveryIdentityConfig", clusterID=secrets.cluster_id, clusterSecret=secrets.cluster_secret)
    )
    if opts.install_disk:
        installer = {"image": opts.install_image} if opts.install_image else {}
        provisioning = {"diskSelector": {"match": f'disk.dev_path == "{opts.install_disk}"'}, "wipe": False}
        docs.append(doc("UnattendedInstallConfig", installer=installer, provisioning=provisioning))
    docs.append(doc("ResolverConfig", hostDNS={"enabled": True, "forwardKubeDNSToHost": True}))
    if opts.sysctls:
        docs.append(doc("SysctlConfig", params=dict(opts.sysctls)))
    docs += [
        doc("VolumeConfig", name="EPHEMERAL", mount={"secure": True}),
        doc("FilesystemTrimConfig", interval="168h0m0s"),
        doc("SecurityProfileConfig", workloadIsolation=True),
        *registry_documents(opts),
        doc("HostnameConfig", auto="stable"),
        *_kubernetes_universal(opts, control_plane=control_plane),
    ]
    if control_plane:
        docs += _kubernetes_control_plane(opts)
    return docs


def base_documents(opts: GenerateOptions, machine_type: MachineType) -> list[dict[str, Any]]:
    """The documents ``talosctl gen config`` would generate for ``machine_type``."""
    if opts.contract.multidoc_kubernetes:
        return _multidoc(opts, machine_type)
    if not opts.contract.multidoc_network_config:
        return [v1alpha1_legacy(opts, machine_type)]
    return [
        v1alpha1_legacy(opts, machine_type),
        *registry_documents(opts),
        doc("HostnameConfig", auto="stable"),
    ]
