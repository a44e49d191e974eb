"""From stored inventory records to one machine's validated Talos config.

The one path both the daemon (config delivery) and the CLI (`provisioner cluster config`)
use, so what an operator previews is byte for byte what a machine receives.
A config that fails validation is never returned: `ConfigRenderError` carries the reasons,
and the caller refuses to serve it and fails the machine with them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from provisioner.events import Event, Severity, utcnow
from provisioner.store.records import ClusterRecord, MachineRecord
from provisioner.store.repository import Store
from provisioner.talos.config import ClusterSpec, LinkSpec, MachineSpec, generate_config
from provisioner.talos.contract import ResolvedContract, UnsupportedContractError, VersionContract, resolve
from provisioner.talos.documents import DEFAULT_KUBEPRISM_PORT
from provisioner.talos.patches import ConfigPatch, PatchError
from provisioner.talos.secrets import SecretsBundle, SecretsFormatError, load_bundle
from provisioner.talos.validate import Mode, validate_config
from provisioner.web.protocols import ConfigRefusedError

__all__ = ["ConfigRenderError", "cluster_spec", "load_secrets", "machine_spec", "render_machine_config"]


class ConfigRenderError(ConfigRefusedError):
    """The machine's config cannot be produced; the message says why (no secrets in it).

    A ConfigRefusedError, so the web layer records the message (the Talos rule a config
    breaks, say) as the machine's failure reason.
    """


def _patches(raw: Sequence[Any], where: str) -> tuple[ConfigPatch, ...]:
    out = []
    for index, patch in enumerate(raw):
        text = patch if isinstance(patch, str) else yaml.safe_dump(patch, sort_keys=False)
        try:
            out.append(ConfigPatch.parse(text))
        except PatchError as exc:
            msg = f"{where} configPatches[{index}]: {exc}"
            raise ConfigRenderError(msg) from None
    return tuple(out)


def resolved_contract(cluster: ClusterRecord) -> ResolvedContract:
    """The config contract a cluster's Talos version implies, with a note when it is not its own."""
    try:
        return resolve(cluster.talos_version)
    except UnsupportedContractError as exc:
        raise ConfigRenderError(f"cluster {cluster.name}: {exc}") from None


def contract_of(cluster: ClusterRecord) -> VersionContract:
    """The config contract a cluster's Talos version implies."""
    return resolved_contract(cluster).contract


def cluster_spec(cluster: ClusterRecord, bundle: SecretsBundle) -> ClusterSpec:
    """The Talos generation inputs of a stored cluster."""
    spec: Mapping[str, Any] = cluster.spec
    cni = spec.get("cni") or {}
    return ClusterSpec(
        name=cluster.name,
        endpoint=cluster.endpoint,
        kubernetes_version=cluster.kubernetes_version.removeprefix("v"),
        contract=contract_of(cluster),
        secrets=bundle,
        dns_domain=str(spec.get("dnsDomain", "cluster.local")),
        cni=cni.get("name", "flannel"),
        cni_urls=tuple(cni.get("urls", ())),
        allow_scheduling_on_control_planes=bool(spec.get("allowSchedulingOnControlPlanes", False)),
        cert_sans=tuple(spec.get("certSANs", ())),
        registry_mirrors={k: tuple(v) for k, v in (spec.get("registryMirrors") or {}).items()},
        install_disk=str(spec.get("installDisk") or ""),
        install_image=str(spec.get("installImage") or ""),
        extra_kernel_args=tuple(str(a) for a in spec.get("kernelArgs", ())),
        sysctls={str(k): str(v) for k, v in (spec.get("sysctls") or {}).items()},
        local_api_server_port=int(spec.get("localAPIServerPort") or 0),
        pod_subnets=tuple(str(s) for s in spec.get("podSubnets", ())),
        service_subnets=tuple(str(s) for s in spec.get("serviceSubnets", ())),
        discovery=bool(spec.get("discovery", True)),
        kubeprism_port=int(spec.get("kubePrismPort", DEFAULT_KUBEPRISM_PORT)),
        patches=_patches(spec.get("configPatches", ()), f"cluster {cluster.name}"),
    )


def _links(interfaces: Sequence[Mapping[str, Any]]) -> tuple[LinkSpec, ...]:
    links = []
    for entry in interfaces:
        name = entry.get("name") or entry.get("interface")
        if not name:
            continue
        links.append(
            LinkSpec(
                name=str(name),
                addresses=tuple(str(a) for a in entry.get("addresses", ())),
                gateway=str(entry.get("gateway", "")),
                mtu=int(entry.get("mtu", 0)),
            )
        )
    return tuple(links)


def machine_spec(machine: MachineRecord, cluster: ClusterRecord) -> MachineSpec:
    """The Talos generation inputs of a stored machine."""
    spec: Mapping[str, Any] = machine.spec
    # Talos writes a taint as key: "value:effect" (or key: "effect" without a value); the
    # inventory stored only non-default fields, so the effect may be absent (NoSchedule).
    taints = {}
    for taint in spec.get("taints", ()):
        effect = taint.get("effect", "NoSchedule")
        taints[taint["key"]] = f"{taint['value']}:{effect}" if taint.get("value") else effect
    # hostnameMode stable keeps Talos's generated HostnameConfig "auto: stable".
    stable = (spec.get("hostnameMode") or cluster.spec.get("hostnameMode")) == "stable"
    return MachineSpec(
        role="controlplane" if machine.role == "controlplane" else "worker",
        hostname="" if stable else machine.hostname or machine.name,
        install_disk=machine.install_disk or str(cluster.spec.get("installDisk") or ""),
        install_image=str(spec.get("installImage") or ""),
        links=_links(spec.get("interfaces", ())),
        nameservers=tuple(str(n) for n in spec.get("nameservers", ())),
        cert_sans=tuple(spec.get("certSANs", ())),
        node_labels={str(k): str(v) for k, v in machine.labels.items()},
        node_taints=taints,
        sysctls={str(k): str(v) for k, v in (spec.get("sysctls") or {}).items()},
        extra_kernel_args=tuple(spec.get("kernelArgs", ())),
        patches=_patches(spec.get("configPatches", ()), f"machine {machine.name}"),
    )


async def load_secrets(store: Store, cluster: str) -> SecretsBundle:
    """The cluster's secrets bundle from the database; ConfigRenderError if it has none."""
    raw = await store.get_cluster_secrets(cluster)
    if raw is None:
        msg = f"cluster {cluster} has no secrets bundle: run `provisioner cluster secrets {cluster}`"
        raise ConfigRenderError(msg)
    try:
        return load_bundle(raw.decode())
    except SecretsFormatError as exc:
        raise ConfigRenderError(f"cluster {cluster}: stored secrets bundle is invalid: {exc}") from None


async def render_machine_config(
    store: Store, machine: MachineRecord, cluster: ClusterRecord, *, mode: Mode = "metal"
) -> bytes:
    """Generate and validate the machine's config; raise ConfigRenderError with the reasons.

    A Talos version newer than the newest known contract is generated with that contract
    and recorded as a ``config.contract`` event on the machine.
    """
    bundle = await load_secrets(store, cluster.name)
    cspec = cluster_spec(cluster, bundle)
    if note := resolved_contract(cluster).note:
        event = Event(
            kind="config.contract", at=utcnow(), machine=machine.name, severity=Severity.WARNING, message=note
        )
        await store.append_events([event])
    try:
        text = generate_config(cspec, machine_spec(machine, cluster))
    except (PatchError, ValueError) as exc:
        raise ConfigRenderError(f"machine {machine.name}: cannot generate its config: {exc}") from None
    if problems := validate_config(text, cspec.contract, mode=mode):
        shown = "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise ConfigRenderError(f"machine {machine.name}: generated config is invalid: {shown}")
    return text.encode()
