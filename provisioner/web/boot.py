"""/boot.ipxe (stage one, fixed) and /ipxe (stage two, per machine)."""

from __future__ import annotations

import logging

from aiohttp import web

from provisioner import lifecycle
from provisioner.events import Event, Severity, discovered_event, utcnow
from provisioner.lifecycle import Signal
from provisioner.matching import MachineIndex, RequestLabels, labels_from_raw
from provisioner.model import MachineSummary
from provisioner.store.assets import NAME_RE
from provisioner.web.claim import check_served_elsewhere, claim_refusal
from provisioner.web.context import WebContext, ctx
from provisioner.web.ipxe import BootPlatform, IpxeError
from provisioner.web.policy import BootAction, decide_boot

__all__ = ["boot_script", "machine_script", "routes"]

log = logging.getLogger(__name__)

MAX_NICS = 16
IPXE_CONTENT_TYPE = "text/plain"


def _script(text: str) -> web.Response:
    return web.Response(text=text, content_type=IPXE_CONTENT_TYPE, headers={"Cache-Control": "no-store"})


async def boot_script(request: web.Request) -> web.Response:
    """GET /boot.ipxe: the same for every machine."""
    return _script(ctx(request).ipxe.boot())


def request_labels(query: dict[str, str]) -> tuple[RequestLabels, list[str]]:
    """Labels from the chain URL, plus every well-formed MAC (booting NIC first)."""
    raw_macs = [query.get("mac", ""), *query.get("nics", "").split(",")[: MAX_NICS + 1]]
    macs: list[str] = []
    for raw in raw_macs:
        mac = labels_from_raw(mac=raw).mac
        if mac is not None and mac not in macs:
            macs.append(mac)
    serial = query.get("serial", "")[:128]
    labels = labels_from_raw(
        mac=macs[0] if macs else None,
        uuid=query.get("uuid"),
        serial=serial,
        arch=query.get("arch", "")[:16],
    )
    return labels, macs


def match_machine(index: MachineIndex, labels: RequestLabels, macs: list[str]) -> MachineSummary | None:
    """The machine named by the UUID, then by any MAC in order, then by serial."""
    if labels.uuid is not None and (hit := index.match(RequestLabels(uuid=labels.uuid))) is not None:
        return hit
    for mac in macs:
        if (hit := index.by_mac(mac)) is not None:
            return hit
    return index.match(RequestLabels(serial=labels.serial))


DISCOVERY_ASSET_SET = "discovery"
"""The asset set unknown machines boot when `[dhcp] unknown_machines = "discovery"`."""


async def _unknown(
    c: WebContext, labels: RequestLabels, source: str, platform: BootPlatform | None = None
) -> web.Response:
    # Anyone can call /ipxe with a made-up MAC: the events are grouped by source (one
    # counter row per window) and the discovered table is capped (issue 14).
    if labels.mac is not None:
        try:
            new = await c.rt.store.record_discovered(
                labels.mac,
                uuid=labels.uuid,
                serial=labels.serial,
                arch=labels.arch,
                source="http",
                limit=c.rt.settings.events.max_discovered,
            )
        except Exception:
            log.exception("recording a discovered machine failed")
        else:
            if new:
                c.rt.events.emit(discovered_event(labels.mac, labels.uuid, labels.arch, "http", source))
    c.rt.events.emit(
        Event(
            kind="boot.unknown",
            at=utcnow(),
            message="unknown machine asked for its boot script",
            data={"mac": labels.mac, "uuid": labels.uuid, "source": source},
            group=source,
        )
    )
    if c.rt.settings.dhcp.unknown_machines == "discovery" and platform is not None:
        asset = await c.assets.get(DISCOVERY_ASSET_SET)
        if asset is not None and asset.arch == platform.arch:
            return _script(
                c.ipxe.discovery(asset_set=asset.name, platform=platform, asset_cmdline=asset.cmdline)
            )
        log.warning(
            "unknown_machines = discovery, but no %s asset set for %s", DISCOVERY_ASSET_SET, platform.arch
        )
    return _script(c.ipxe.unknown())


async def machine_script(request: web.Request) -> web.Response:
    """GET /ipxe?mac=&nics=&uuid=&serial=&arch=&platform=: stage two."""
    c = ctx(request)
    labels, macs = request_labels(dict(request.query))
    source = request.remote or ""
    summary = match_machine(c.rt.machines(), labels, macs)
    record = None if summary is None else await c.rt.store.get_machine(summary.name)
    if record is None:
        platform = BootPlatform.from_query(labels.arch, request.query.get("platform"))
        return await _unknown(c, labels, source, platform)
    name = record.name
    decision = decide_boot(record)
    platform = BootPlatform.from_query(labels.arch, request.query.get("platform"))
    if decision.action is BootAction.DISK:
        return _script(c.ipxe.disk(machine=name, mode=decision.disk_mode))
    if decision.action is BootAction.HOLD:
        await check_served_elsewhere(c, record, source)
        return _script(c.ipxe.hold(machine=name, reason=decision.reason))
    return await _install(c, record_name=name, source=source, platform=platform)


async def _install(c: WebContext, *, record_name: str, source: str, platform: BootPlatform) -> web.Response:
    store = c.rt.store
    record = await store.get_machine(record_name)
    if record is None:
        return _script(c.ipxe.error(machine=record_name, reason="machine-deleted"))
    cluster = await store.get_cluster(record.cluster) if record.cluster else None
    asset_name = record.spec.get("assetSet") or (cluster.asset_set if cluster else None)
    reason = ""
    asset = None
    if not isinstance(asset_name, str) or not NAME_RE.fullmatch(asset_name):
        reason = "no-asset-set"
    elif (asset := await c.assets.get(asset_name)) is None:
        reason = "asset-set-missing"
    elif asset.arch != platform.arch:
        reason = "asset-arch-mismatch"
    if reason or asset is None:
        return _refuse_boot(c, record_name, reason or "no-asset-set", source)
    now = utcnow()
    # Issue 14: a MAC proves nothing; only the lease holder (full mode) or the window's
    # first asker (proxy/relay) gets a token. Anyone else: a hold script, and an ALERT.
    held = await claim_refusal(c, record, source, now)
    if held is not None:
        return _script(c.ipxe.hold(machine=record_name, reason=held))
    # A signal, not a move: the lifecycle table decides (PoweringOn or Registered ->
    # Netbooting; a second fetch while Netbooting stays and writes nothing).
    moved = await lifecycle.move(
        store, record, Signal.SCRIPT_FETCHED, "iPXE script fetched", now=now, data={"source": source}
    )
    if not moved:
        return _refuse_boot(c, record_name, "state-changed", source)
    token = await c.tokens.issue(record_name, source, now=now, ttl_s=c.token_ttl_s)
    try:
        text = c.ipxe.install(
            machine=record_name,
            asset_set=asset.name,
            platform=platform,
            asset_cmdline=asset.cmdline,
            extra_args=[
                cluster.spec.get("kernelArgs") if cluster else None,
                record.spec.get("kernelArgs"),
            ],
            token=token,
        )
    except IpxeError as exc:
        await c.tokens.revoke_machine(record_name)
        return _refuse_boot(c, record_name, "bad-kernel-args", source, str(exc))
    c.rt.events.emit(
        Event(
            kind="boot.script",
            at=now,
            machine=record_name,
            data={"asset_set": asset.name, "source": source, "arch": platform.arch, "efi": platform.efi},
        )
    )
    return _script(text)


def _refuse_boot(
    c: WebContext,
    machine: str,
    reason: str,
    source: str,
    detail: str = "",
    *,
    severity: Severity = Severity.WARNING,
) -> web.Response:
    c.rt.events.emit(
        Event(
            kind="boot.error",
            at=utcnow(),
            machine=machine,
            severity=severity,
            message=detail or reason,
            data={"reason": reason, "source": source},
            group=source,  # anyone can ask for a known MAC: repeats fold per source (issue 14)
        )
    )
    return _script(c.ipxe.error(machine=machine, reason=reason))


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    return [web.get("/boot.ipxe", boot_script), web.get("/ipxe", machine_script)]
