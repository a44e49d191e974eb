"""`provisioner dhcp`: DHCP tools."""

from __future__ import annotations

from dataclasses import asdict

import click

from provisioner.cli.common import console, die, emit_json, safe

__all__ = ["dhcp"]


@click.group()
def dhcp() -> None:
    """DHCP tools (probe a segment for DHCP servers)."""


@dhcp.command()
@click.argument("iface")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to collect answers.")
@click.option("--pxe", is_flag=True, help="Ask as a UEFI PXE client (shows proxyDHCP answers too).")
@click.option("--mac", default=None, help="Source MAC (default: the interface's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def probe(iface: str, timeout: float, pxe: bool, mac: str | None, as_json: bool) -> None:
    """Broadcast a DISCOVER on IFACE and list every server that answers (needs root)."""
    from provisioner.dhcp.probe import probe as do_probe

    try:
        answers = do_probe(iface, timeout=timeout, pxe=pxe, mac=mac)
    except (OSError, PermissionError) as exc:
        die(f"cannot probe {iface}: {exc}")
    if as_json:
        emit_json([asdict(a) for a in answers])
        return
    if not answers:
        console.print(f"no DHCP server answered on {safe(iface)} within {timeout:g}s")
        return
    from rich.table import Table

    table = Table("server", "from", "offers", "boot file", "next server", "lease", "vendor class")
    for a in answers:
        # Every field here came off the wire from whatever server answered.
        table.add_row(
            safe(a.server_id),
            safe(f"{a.source_ip} ({a.source_mac})"),
            safe(a.yiaddr) if a.yiaddr != "0.0.0.0" else "(proxy: no address)",
            safe(a.boot_file or "-"),
            safe(a.siaddr) if a.siaddr != "0.0.0.0" else "-",
            f"{a.lease_time}s" if a.lease_time is not None else "-",
            safe(a.vendor_class or "-"),
        )
    console.print(table)
