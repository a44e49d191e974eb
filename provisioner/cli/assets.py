"""`provisioner assets import|list|delete`: kernel + initramfs sets, with sha256.

These commands work on the database and state_dir/assets directly: no daemon needed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from provisioner.cli.common import CliState, console, die, emit_json, pass_state, run, safe

__all__ = ["assets"]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@click.group()
def assets() -> None:
    """Import, list and delete boot asset sets (kernel + initramfs)."""


def _parse_sha(values: tuple[str, ...]) -> dict[str, str]:
    """`--sha256 kernel=HEX --sha256 initramfs=HEX`, or two bare digests in that order."""
    out: dict[str, str] = {}
    bare = ["kernel", "initramfs"]
    for value in values:
        which, sep, digest = value.partition("=")
        if not sep:
            which, digest = (bare.pop(0) if bare else "?"), value
        if which not in {"kernel", "initramfs"} or not _HEX64.fullmatch(digest):
            die(f"--sha256 {value!r}: expected kernel=HEX or initramfs=HEX (64 hex digits)", code=2)
        out[which] = digest.lower()
    return out


async def _fetch(sources: dict[str, str], work: Path, sha: dict[str, str]) -> dict[str, Path]:
    """Local paths for both sources, downloading URLs with a progress bar and resume."""
    import aiohttp
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from provisioner.web.download import DownloadError, download, is_url

    paths: dict[str, Path] = {}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=False,
        ) as bar:
            for which, source in sources.items():
                if not is_url(source):
                    paths[which] = Path(source)
                    continue
                task = bar.add_task(which, total=None)

                def step(done: int, total: int | None, task: Any = task) -> None:  # noqa: ANN401
                    bar.update(task, completed=done, total=total)

                try:
                    paths[which] = await download(
                        session, source, work / which, progress=step, sha256=sha.get(which)
                    )
                except DownloadError as exc:
                    die(str(exc))
    return paths


@assets.command("import")
@click.argument("name")
@click.option("--kernel", help="Kernel file or http(s) URL.")
@click.option("--initramfs", help="Initramfs file or http(s) URL.")
@click.option("--cmdline", default="", help="Extra kernel arguments every boot of this set gets.")
@click.option("--sha256", "sha256", multiple=True, help="kernel=HEX / initramfs=HEX (or two bare digests).")
@click.option("--arch", type=click.Choice(["amd64", "arm64"]), default="amd64", show_default=True)
@click.option("--talos-version", help="Talos version for Image Factory URLs (e.g. v1.13.0).")
@click.option(
    "--schematic",
    help="Image Factory schematic ID, or a schematic YAML file (its ID computed as the factory does).",
)
@click.option("--replace", is_flag=True, help="Replace an existing set of the same name.")
@pass_state
def import_(  # noqa: PLR0917 - one parameter per option
    state: CliState,
    name: str,
    kernel: str | None,
    initramfs: str | None,
    cmdline: str,
    sha256: tuple[str, ...],
    arch: str,
    talos_version: str | None,
    schematic: str | None,
    replace: bool,
) -> None:
    """Store a named kernel + initramfs set under state_dir/assets, verifying sha256."""
    from provisioner.store.assets import AssetError, AssetSets, check_name
    from provisioner.web.download import DownloadError, factory_urls, schematic_id

    try:
        check_name(name)
    except AssetError as exc:
        die(str(exc), code=2)
    source: dict[str, Any] = {}
    if talos_version or schematic:
        if not (talos_version and schematic):
            die("--talos-version and --schematic go together", code=2)
        try:
            sid = schematic_id(schematic)
            k_url, i_url = factory_urls(sid, talos_version, arch)
        except DownloadError as exc:
            die(str(exc), code=2)
        kernel, initramfs = kernel or k_url, initramfs or i_url
        source.update(talos_version=talos_version, schematic=sid)
    if not kernel or not initramfs:
        die("give --kernel and --initramfs (or --talos-version with --schematic)", code=2)
    sha = _parse_sha(sha256)
    source.update(kernel=kernel, initramfs=initramfs)
    settings = state.settings
    work = settings.state_dir / "assets" / ".downloads" / name

    async def go() -> Any:  # noqa: ANN401
        paths = await _fetch({"kernel": kernel, "initramfs": initramfs}, work, sha)

        async def store_it(store: Any) -> Any:  # noqa: ANN401
            sets = AssetSets(store, settings.state_dir / "assets")
            return await sets.add(
                name,
                paths["kernel"],
                paths["initramfs"],
                arch=arch,
                cmdline=cmdline,
                kernel_sha256=sha.get("kernel"),
                initramfs_sha256=sha.get("initramfs"),
                source=source,
                replace=replace,
            )

        return await state.with_store(store_it)

    try:
        record = run(go())
    except AssetError as exc:
        die(str(exc))
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    console.print(f"imported asset set [bold]{safe(record.name)}[/bold] ({safe(record.arch)})")
    console.print(f"  kernel     {record.kernel_size:>12} bytes  sha256 {safe(record.kernel_sha256)}")
    console.print(f"  initramfs  {record.initramfs_size:>12} bytes  sha256 {safe(record.initramfs_sha256)}")


@assets.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@pass_state
def list_(state: CliState, as_json: bool) -> None:
    """List asset sets and who uses them."""
    from provisioner.store.assets import AssetSets
    from provisioner.web.api.common import plain

    async def go(store: Any) -> list[dict[str, Any]]:  # noqa: ANN401
        sets = AssetSets(store, state.settings.state_dir / "assets")
        return [{**plain(r), "used_by": await sets.users(r.name)} for r in await sets.all()]

    rows = run(state.with_store(go))
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table("name", "arch", "kernel sha256", "initramfs sha256", "size", "used by")
    for r in rows:
        size = r["kernel_size"] + r["initramfs_size"]
        table.add_row(
            safe(r["name"]),
            safe(r["arch"]),
            safe(r["kernel_sha256"][:16]),
            safe(r["initramfs_sha256"][:16]),
            f"{size / 1e6:.1f} MB",
            safe(", ".join(r["used_by"]) or "-"),
        )
    console.print(table)


@assets.command("delete")
@click.argument("name")
@pass_state
def delete(state: CliState, name: str) -> None:
    """Delete an asset set (refused while a cluster or machine names it)."""
    from provisioner.store.assets import AssetError, AssetSets

    async def go(store: Any) -> None:  # noqa: ANN401
        await AssetSets(store, state.settings.state_dir / "assets").delete(name, actor="cli")

    try:
        run(state.with_store(go))
    except KeyError:
        die(f"no asset set {name!r}")
    except AssetError as exc:
        die(str(exc))
    console.print(f"deleted asset set {safe(name)}")
