"""``provisioner cluster``: Talos secrets bundles, machine configs, talosconfig, validation.

Bundles live in the database, encrypted at rest with the state directory's key (the same
store the daemon reads). A cluster must be in the inventory before it gets secrets.
`cluster config NAME MACHINE` renders exactly what the daemon would serve that machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar, cast

import click

from provisioner.cli.common import CliState, pass_state, safe
from provisioner.secretfile import write_private
from provisioner.store.records import ClusterRecord
from provisioner.store.repository import Store
from provisioner.talos.config import ClusterSpec, MachineSpec, generate_config
from provisioner.talos.contract import UnsupportedContractError, VersionContract, resolve
from provisioner.talos.patches import ConfigPatch, PatchError
from provisioner.talos.repository import StoreSecretsRepository, UnknownClusterError, check_cluster_name
from provisioner.talos.secrets import (
    SecretsBundle,
    SecretsFormatError,
    dump_bundle,
    generate_bundle,
    load_bundle,
)
from provisioner.talos.talosconfig import generate_talosconfig
from provisioner.talos.validate import Mode, validate_config

__all__ = ["cluster"]

DEFAULT_KUBERNETES = "1.34.1"

T = TypeVar("T")


def _with_store(state: CliState, work: Callable[[Store], Awaitable[T]]) -> T:
    return asyncio.run(state.with_store(work))


def _contract(value: str) -> VersionContract:
    """The contract for a Talos version; newer than the newest known: the newest, said on stderr."""
    try:
        resolved = resolve(value)
    except UnsupportedContractError as exc:
        raise click.BadParameter(str(exc)) from exc
    if resolved.note:
        click.echo(f"warning: {resolved.note}", err=True)
    return resolved.contract


def _name(value: str) -> str:
    try:
        return check_cluster_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _write_private(path: Path, text: str) -> None:
    """Write a file holding secrets: 0600, created fresh, never through a symlink."""
    write_private(path, text)


async def _bundle(store: Store, name: str) -> SecretsBundle:
    bundle = await StoreSecretsRepository(store).get(name)
    if bundle is None:
        msg = f"cluster {name!r} has no secrets yet: run 'provisioner cluster secrets {name}' first"
        raise click.ClickException(msg)
    return bundle


@click.group()
def cluster() -> None:
    """Talos cluster secrets, machine configs, talosconfig and config validation."""


@cluster.command()
@click.argument("name")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Import a 'talosctl gen secrets' bundle instead of generating one.",
)
@click.option(
    "--export",
    "export",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the bundle to this file (mode 0600).",
)
@click.option("--force", is_flag=True, help="Replace an existing bundle (breaks the running cluster!).")
@pass_state
def secrets(state: CliState, name: str, from_file: Path | None, export: Path | None, force: bool) -> None:
    """Create (or import) the secrets bundle of cluster NAME; keep an existing one.

    The cluster must be in the inventory (`provisioner inventory apply`); its Talos
    version decides the bundle's format. The bundle is stored encrypted in the database.
    """
    name = _name(name)
    imported = from_file.read_text(encoding="utf-8") if from_file is not None else None

    async def work(store: Store) -> str:
        record = await store.get_cluster(name)
        if record is None:
            msg = f"cluster {name!r} is not in the database; apply the inventory that defines it first"
            raise click.ClickException(msg)
        repository = StoreSecretsRepository(store)
        existing = await repository.get(name)
        if imported is not None:
            try:
                bundle = load_bundle(imported)
            except SecretsFormatError as exc:
                raise click.ClickException(f"{from_file}: {exc}") from exc
            action = "imported"
        elif existing is not None and not force:
            bundle, action = existing, "kept existing"
        else:
            contract = _contract(record.talos_version)
            bundle, action = generate_bundle(datetime.now(UTC), contract), "generated"
        if existing is not None and bundle != existing and not force:
            raise click.ClickException(
                f"cluster {name!r} already has different secrets; use --force to replace"
            )
        if bundle != existing:
            try:
                await repository.put(name, bundle)
            except UnknownClusterError as exc:
                raise click.ClickException(str(exc)) from exc
        if export is not None:
            _write_private(export, dump_bundle(bundle))
        return action

    action = _with_store(state, work)
    click.echo(f"{name}: {action} secrets bundle" + (f", exported to {export}" if export else ""))


@cluster.command()
@click.argument("name")
@click.argument("machine", required=False)
@click.option(
    "--endpoint",
    help="Ad-hoc mode: generic controlplane + worker configs for this endpoint, from the cluster's fields.",
)
@click.option(
    "--kubernetes-version",
    default=None,
    help="Ad-hoc mode only; must match the cluster's kubernetesVersion if given.",
)
@click.option(
    "--install-disk", default="", help="Ad-hoc mode only: install disk, unless the cluster sets another."
)
@click.option(
    "--patch",
    "patches",
    multiple=True,
    help="Ad-hoc mode: config patch, inline YAML/JSON or @FILE, after the cluster's (repeatable).",
)
@click.option(
    "--mode",
    type=click.Choice(["metal", "cloud", "container"]),
    default="metal",
    show_default=True,
    help="Runtime mode the configs are validated for (the daemon always validates for metal).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write files here, not stdout.")
@pass_state
def config(  # noqa: PLR0917 - one parameter per option
    state: CliState,
    name: str,
    machine: str | None,
    endpoint: str | None,
    kubernetes_version: str | None,
    install_disk: str,
    patches: tuple[str, ...],
    mode: str,
    out: Path | None,
) -> None:
    """Machine configs of cluster NAME: for MACHINE, or for every machine of the cluster.

    The configs are rendered and validated exactly as the daemon serves them. With
    --endpoint, write generic controlplane.yaml and worker.yaml instead (like
    `talosctl gen config`) from the cluster's stored secrets and its inventory fields
    (SANs, DNS domain, CNI, mirrors, sysctls, kernel args, configPatches...), validated
    for --mode too; flags that contradict those fields are refused.
    """
    name = _name(name)
    checked = cast("Mode", mode)
    if endpoint:
        adhoc = AdhocFlags(endpoint, kubernetes_version, install_disk, patches)
        outputs = _with_store(state, lambda st: _adhoc(st, name, adhoc, checked))
    else:
        outputs = _with_store(state, lambda st: _inventory_configs(st, name, machine, checked))
    for filename, text in outputs.items():
        if out is None:
            click.echo(text, nl=False)
            continue
        _write_private(out / filename, text)
        click.echo(f"wrote {out / filename}", err=True)


async def _inventory_configs(store: Store, name: str, machine: str | None, mode: Mode) -> dict[str, str]:
    from provisioner.talos.render import ConfigRenderError, render_machine_config

    record = await store.get_cluster(name)
    if record is None:
        raise click.ClickException(f"cluster {name!r} is not in the database")
    machines = [
        m for m in await store.list_machines() if m.cluster == name and (machine is None or m.name == machine)
    ]
    if not machines:
        raise click.ClickException(
            f"no machine {machine!r} in cluster {name!r}" if machine else f"cluster {name!r} has no machines"
        )
    outputs = {}
    for m in machines:
        try:
            outputs[f"{m.name}.yaml"] = (await render_machine_config(store, m, record, mode=mode)).decode()
        except ConfigRenderError as exc:
            raise click.ClickException(str(exc)) from exc
    return outputs


@dataclasses.dataclass(frozen=True)
class AdhocFlags:
    """The ad-hoc mode's flags."""

    endpoint: str
    kubernetes_version: str | None
    install_disk: str
    patches: tuple[str, ...]


def _adhoc_spec(record: ClusterRecord, bundle: SecretsBundle, flags: AdhocFlags) -> ClusterSpec:
    """The cluster's own generation inputs, with the endpoint (and flags that agree) applied."""
    from provisioner.talos.render import ConfigRenderError, cluster_spec

    try:
        spec = cluster_spec(record, bundle)
        parsed = tuple(ConfigPatch.parse(_patch_text(text)) for text in flags.patches)
    except (ConfigRenderError, PatchError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    wanted = (flags.kubernetes_version or "").removeprefix("v")
    if wanted and wanted != spec.kubernetes_version:
        msg = (
            f"--kubernetes-version {flags.kubernetes_version} conflicts with cluster {record.name}'s "
            f"kubernetesVersion {record.kubernetes_version}: change the inventory instead"
        )
        raise click.ClickException(msg)
    if flags.install_disk and spec.install_disk and flags.install_disk != spec.install_disk:
        msg = (
            f"--install-disk {flags.install_disk} conflicts with cluster {record.name}'s installDisk "
            f"{spec.install_disk}: change the inventory instead"
        )
        raise click.ClickException(msg)
    return dataclasses.replace(
        spec,
        endpoint=flags.endpoint,
        install_disk=spec.install_disk or flags.install_disk,
        patches=(*spec.patches, *parsed),
    )


async def _adhoc(store: Store, name: str, flags: AdhocFlags, mode: Mode) -> dict[str, str]:
    record = await store.get_cluster(name)
    if record is None:
        raise click.ClickException(f"cluster {name!r} is not in the database")
    spec = _adhoc_spec(record, await _bundle(store, name), flags)
    outputs = {}
    for role in ("controlplane", "worker"):
        text = generate_config(spec, MachineSpec(role="controlplane" if role == "controlplane" else "worker"))
        if problems := validate_config(text, spec.contract, mode):
            shown = "; ".join(problems)
            raise click.ClickException(f"{role}.yaml: the generated config is invalid for {mode}: {shown}")
        outputs[f"{role}.yaml"] = text
    return outputs


def _patch_text(value: str) -> str:
    return Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value


@cluster.command()
@click.argument("name")
@click.option(
    "--endpoint", "endpoints", multiple=True, help="Control-plane address (default: from the inventory)."
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@pass_state
def talosconfig(state: CliState, name: str, endpoints: tuple[str, ...], out: Path | None) -> None:
    """Write an admin talosconfig for cluster NAME (client certificate valid one year).

    Endpoints default to the addresses of the cluster's control-plane machines.
    """
    name = _name(name)

    async def work(store: Store) -> tuple[SecretsBundle, list[str]]:
        bundle = await _bundle(store, name)
        found = [
            m.ip or m.hostname or m.name
            for m in await store.list_machines()
            if m.cluster == name and m.role == "controlplane"
        ]
        return bundle, list(endpoints) or found

    bundle, chosen = _with_store(state, work)
    text = generate_talosconfig(name, chosen, bundle.os, datetime.now(UTC))
    if out is None:
        click.echo(text, nl=False)
    else:
        _write_private(out, text)
        click.echo(f"wrote {out}", err=True)


@cluster.command("rotate-token")
@click.argument("name")
@pass_state
def rotate_token(state: CliState, name: str) -> None:
    """Give cluster NAME a new machine (trustd) token; every CA and key stays.

    Configs rendered from now on carry the new token, and trustd (after a daemon restart)
    accepts only it. Nodes already running keep the old token in their config: apply the
    new worker config to them (talosctl apply-config) before restarting the daemon.
    """
    from provisioner.talos.secrets import generate_token

    name = _name(name)

    async def work(store: Store) -> None:
        bundle = await _bundle(store, name)
        rotated = dataclasses.replace(bundle, trustd_token=generate_token())
        await StoreSecretsRepository(store, actor="cli:rotate-token").put(name, rotated)

    _with_store(state, work)
    click.echo(f"{name}: new machine token stored; restart the daemon so trustd uses it")


@cluster.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--mode",
    type=click.Choice(["metal", "cloud", "container"]),
    default="metal",
    show_default=True,
    help="Runtime mode: metal requires an install disk.",
)
@click.option("--talos-version", default=None, help="Schema release (default: guessed from the config).")
def validate(file: Path, mode: str, talos_version: str | None) -> None:
    """Validate a Talos machine config FILE as Talos would; exit 1 listing every problem."""
    contract = _contract(talos_version) if talos_version else None
    errors = validate_config(file.read_text(encoding="utf-8"), contract, cast("Mode", mode))
    if errors:
        for error in errors:
            click.echo(safe(f"{file}: {error}", markup=False), err=True)
        sys.exit(1)
    click.echo(f"{file}: valid")
