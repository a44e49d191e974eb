"""Validate inventory documents: every problem at once, each as `file:line: message`.

Checks, in order: each document against its kind's schema (and a cluster's Talos version
against the supported version contracts: older is an error, newer a warning); then across
documents:
duplicate names, the same MAC, UUID or IP on two machines, a machine naming an unknown
cluster, an IP outside every configured DHCP subnet, asset sets named but unknown (only
when the caller knows the asset sets).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import ValidationError

from provisioner.inventory.loader import RawDocument, line_of, load_paths
from provisioner.inventory.schema import ClusterSpec, MachineSpec
from provisioner.settings import SubnetSettings
from provisioner.talos.contract import UnsupportedContractError
from provisioner.talos.contract import resolve as resolve_contract
from provisioner.talos.rules_labels import label_problems, taint_problems

__all__ = ["Inventory", "Located", "load_inventory"]

T = TypeVar("T")

_KINDS: dict[str, type[ClusterSpec | MachineSpec]] = {"Cluster": ClusterSpec, "Machine": MachineSpec}


@dataclass(frozen=True, slots=True)
class Located(Generic[T]):
    """A validated document with where it came from."""

    spec: T
    file: str
    line: int

    @property
    def where(self) -> str:
        """`file:line`."""
        return f"{self.file}:{self.line}"


@dataclass
class Inventory:
    """The validated contents of a set of inventory files."""

    clusters: dict[str, Located[ClusterSpec]] = field(default_factory=dict)
    machines: dict[str, Located[MachineSpec]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems


def _message(err: dict[str, object]) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown key (typo?)"
    if kind == "missing":
        return "required key is missing"
    text = str(err.get("msg", "invalid value"))
    return text.removeprefix("Value error, ")


def _validate_doc(doc: RawDocument, inv: Inventory) -> None:
    kind = doc.data.get("kind")
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        line = doc.data.key_lines.get("kind", doc.line)
        inv.problems.append(f"{doc.file}:{line}: kind must be one of {', '.join(_KINDS)} (got {kind!r})")
        return
    try:
        spec = model.model_validate(dict(doc.data))
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            path = ".".join(str(p) for p in loc)
            inv.problems.append(f"{doc.file}:{line_of(doc.data, loc)}: {kind} {path}: {_message(dict(err))}")
        return
    name_line = doc.data.key_lines.get("name", doc.line)
    if isinstance(spec, ClusterSpec):
        _check_talos_version(spec, doc, inv)
        if (prev := inv.clusters.get(spec.name)) is not None:
            inv.problems.append(
                f"{doc.file}:{name_line}: duplicate Cluster name {spec.name!r} (first at {prev.where})"
            )
        else:
            inv.clusters[spec.name] = Located(spec, doc.file, doc.line)
    elif (prev_m := inv.machines.get(spec.name)) is not None:
        inv.problems.append(
            f"{doc.file}:{name_line}: duplicate Machine name {spec.name!r} (first at {prev_m.where})"
        )
    else:
        inv.machines[spec.name] = Located(spec, doc.file, doc.line)


def _check_talos_version(spec: ClusterSpec, doc: RawDocument, inv: Inventory) -> None:
    """The version contract: older than supported is an error, newer a warning."""
    where = f"{doc.file}:{doc.data.key_lines.get('talosVersion', doc.line)}"
    try:
        resolved = resolve_contract(spec.talos_version)
    except UnsupportedContractError as exc:
        inv.problems.append(f"{where}: Cluster talosVersion: {exc}")
        return
    if resolved.note:
        inv.warnings.append(f"{where}: Cluster talosVersion: {resolved.note}")
    if spec.kernel_args and resolved.contract.multidoc_kubernetes:
        inv.warnings.append(
            f"{where}: cluster {spec.name}: kernelArgs reach the PXE boot only: from Talos 1.14 the "
            "installed system's kernel arguments come from the installer image (Image Factory "
            "schematic customization.extraKernelArgs), see docs/talos.md"
        )


def _check_machine_talos_fields(inv: Inventory) -> None:
    """What Talos would refuse in the machine's config, reported here with file:line."""
    for name, loc in inv.machines.items():
        spec = loc.spec
        taints = {t.key: f"{t.value}:{t.effect}" if t.value else t.effect for t in spec.taints}
        for what, problems in (("labels", label_problems(spec.labels)), ("taints", taint_problems(taints))):
            if problems:
                inv.problems.append(
                    f"{loc.where}: machine {name}: invalid node {what}: {'; '.join(problems)}"
                )
        cluster = inv.clusters.get(spec.cluster) if spec.cluster else None
        mode = spec.hostname_mode or (cluster.spec.hostname_mode if cluster else "static")
        if mode == "stable" and spec.hostname:
            inv.problems.append(
                f"{loc.where}: machine {name}: hostname {spec.hostname!r} with hostnameMode stable "
                "(Talos refuses a static hostname together with auto: stable)"
            )


def _cross_check(inv: Inventory, subnets: Sequence[SubnetSettings], asset_sets: set[str] | None) -> None:
    seen_mac: dict[str, Located[MachineSpec]] = {}
    seen_uuid: dict[str, Located[MachineSpec]] = {}
    seen_ip: dict[ipaddress.IPv4Address, Located[MachineSpec]] = {}
    networks = [s.cidr for s in subnets]
    for name, loc in inv.machines.items():
        spec = loc.spec
        for mac in spec.macs:
            if (other := seen_mac.setdefault(mac, loc)) is not loc:
                inv.problems.append(
                    f"{loc.where}: MAC {mac} of {name} is also on {other.spec.name} ({other.where})"
                )
        if spec.uuid and (other := seen_uuid.setdefault(spec.uuid, loc)) is not loc:
            inv.problems.append(
                f"{loc.where}: UUID {spec.uuid} of {name} is also on {other.spec.name} ({other.where})"
            )
        if spec.ip is not None:
            if (other := seen_ip.setdefault(spec.ip, loc)) is not loc:
                inv.problems.append(
                    f"{loc.where}: IP {spec.ip} of {name} is also on {other.spec.name} ({other.where})"
                )
            if networks and not any(spec.ip in net for net in networks):
                inv.problems.append(
                    f"{loc.where}: IP {spec.ip} of {name} is outside every configured DHCP subnet "
                    f"({', '.join(str(n) for n in networks)})"
                )
        if spec.cluster is not None and spec.cluster not in inv.clusters:
            inv.problems.append(f"{loc.where}: machine {name} names unknown cluster {spec.cluster!r}")
        if spec.bmc is not None and spec.bmc.driver in ("ipmi", "redfish") and not spec.bmc.address:
            inv.problems.append(
                f"{loc.where}: machine {name}: bmc.address is required for driver {spec.bmc.driver}"
            )
        if asset_sets is not None and spec.asset_set and spec.asset_set not in asset_sets:
            inv.problems.append(f"{loc.where}: machine {name} names unknown asset set {spec.asset_set!r}")
    if asset_sets is not None:
        for name, cloc in inv.clusters.items():
            if cloc.spec.asset_set and cloc.spec.asset_set not in asset_sets:
                inv.problems.append(
                    f"{cloc.where}: cluster {name} names unknown asset set {cloc.spec.asset_set!r}"
                )


def load_inventory(
    paths: Sequence[Path],
    *,
    subnets: Sequence[SubnetSettings] = (),
    asset_sets: set[str] | None = None,
) -> Inventory:
    """Load and validate; `Inventory.problems` lists every problem found."""
    docs, errors = load_paths(list(paths))
    inv = Inventory(problems=list(errors))
    for doc in docs:
        _validate_doc(doc, inv)
    _cross_check(inv, subnets, asset_sets)
    _check_machine_talos_fields(inv)
    inv.problems.sort(key=_sort_key)
    inv.warnings.sort(key=_sort_key)
    return inv


def _sort_key(problem: str) -> tuple[str, int, str]:
    file, _, rest = problem.partition(":")
    number, _, text = rest.partition(":")
    return (file, int(number) if number.isdigit() else 0, text)
