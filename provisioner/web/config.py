"""GET /config: guarded, one-time delivery of a machine's Talos config.

Theory of operation (docs/threats.md C2-C5)
--------------------------------------------------------------------
The config carries cluster secrets, so every check below must pass, in this order:

1. a token is present and was issued (only its sha256 is stored);
2. it is not revoked, not expired, and not used: a second fetch of a used token is a
   replay and raises an ALERT event;
3. the machine still exists, and the `uuid`/`mac` Talos filled in (if any) are that
   machine's: a token moved to another machine is refused;
4. the requester's address fetched the script carrying the token (`issued_to`) or holds
   the machine's bound lease;
5. the machine is in the provisioning window (`policy.CONFIG_DELIVERY_STATES`);
6. the renderer (`WebRuntime.renderer`) produces the body; if it is missing or
   fails the answer is 503 and the machine goes to Failed with the reason;
7. the token is spent (compare-and-set) and the machine moves Netbooting -> ConfigServed
   (compare-and-set), and only then are the bytes sent.

Every refusal is a `config.refused` event with the reason; answers are short plain-text
403/404/503 bodies, never a trace. Talos re-encodes the query (`52%3A54%3A...`), and some
proxies encode twice, so label values are decoded until stable.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from urllib.parse import unquote

from aiohttp import web

from provisioner import lifecycle
from provisioner.events import Event, Severity, utcnow
from provisioner.lifecycle import Signal
from provisioner.matching import labels_from_raw
from provisioner.store.records import MachineRecord
from provisioner.web.context import TOKEN_ID, TOKEN_MACHINE, WebContext, ctx
from provisioner.web.policy import CONFIG_DELIVERY_STATES
from provisioner.web.protocols import ConfigRefusedError

__all__ = ["fetch_config", "routes"]

log = logging.getLogger(__name__)

MAX_TOKEN_LEN = 128
CONFIG_CONTENT_TYPE = "application/yaml"


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything we store is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def decode_label(raw: str) -> str:
    """A query value decoded until stable (at most three rounds)."""
    value = raw
    for _ in range(3):
        decoded = unquote(value)
        if decoded == value:
            break
        value = decoded
    return value


class RefusedError(Exception):
    """A refused fetch: HTTP status, reason code, severity."""

    def __init__(self, status: int, reason: str, severity: Severity = Severity.WARNING) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.severity = severity


def _labels_match(machine: MachineRecord, query: dict[str, str]) -> bool:
    raw_uuid = decode_label(query.get("uuid", "")).strip()
    raw_mac = decode_label(query.get("mac", "")).strip()
    labels = labels_from_raw(mac=raw_mac, uuid=raw_uuid)
    # An unsubstituted "${...}" means Talos did not fill the variable in: not a mismatch.
    if (
        raw_uuid
        and not raw_uuid.startswith("${")
        and (labels.uuid is None or (machine.uuid is not None and labels.uuid != machine.uuid))
    ):
        return False
    return not (
        raw_mac and not raw_mac.startswith("${") and (labels.mac is None or labels.mac not in machine.macs)
    )


async def _check(c: WebContext, request: web.Request, token: str, source: str) -> tuple[MachineRecord, int]:
    """Run checks 1-5; return the machine and the token id, or raise RefusedError."""
    if not token:
        raise RefusedError(403, "missing-token")
    if len(token) > MAX_TOKEN_LEN:
        raise RefusedError(403, "unknown-token")
    record = await c.tokens.lookup(token)
    if record is None:
        raise RefusedError(403, "unknown-token")
    request[TOKEN_ID] = record.id
    request[TOKEN_MACHINE] = record.machine
    now = utcnow()
    if record.used_at is not None:
        raise RefusedError(403, "token-replayed", Severity.ALERT)
    if record.revoked:
        raise RefusedError(403, "token-revoked", Severity.ALERT)
    if _aware(record.expires_at) <= now:
        raise RefusedError(403, "token-expired")
    machine = await c.rt.store.get_machine(record.machine)
    if machine is None:
        raise RefusedError(404, "machine-unknown")
    if not _labels_match(machine, dict(request.query)):
        raise RefusedError(403, "wrong-machine", Severity.ALERT)
    if source != record.issued_to and not await c.tokens.holds_lease(
        source, machine.name, machine.macs, now=now
    ):
        raise RefusedError(403, "wrong-source", Severity.ALERT)
    if machine.state not in CONFIG_DELIVERY_STATES:
        raise RefusedError(403, "not-provisioning")
    return machine, record.id


async def _render(c: WebContext, machine: MachineRecord) -> bytes:
    """Check 6: the body, or RefusedError(503) after failing the machine."""
    renderer = c.rt.renderer
    cluster = await c.rt.store.get_cluster(machine.cluster) if machine.cluster else None
    reason = ""
    body = b""
    if renderer is None:
        reason = "renderer-unavailable"
    elif cluster is None:
        reason = "no-cluster"
    else:
        try:
            body = await renderer(machine, cluster)
        except ConfigRefusedError as exc:
            reason = f"renderer-failed: {exc}"
        except Exception as exc:
            log.exception("config renderer failed for %s", machine.name)
            reason = f"renderer-failed: {type(exc).__name__}"
        else:
            if not isinstance(body, bytes) or not body:
                reason = "renderer-failed: empty config"
    if reason:
        await lifecycle.move(c.rt.store, machine, Signal.FAILED, f"config: {reason}", now=utcnow())
        raise RefusedError(503, reason.split(":", 1)[0])
    return body


async def fetch_config(request: web.Request) -> web.Response:
    """GET /config?t=<token>&uuid=<uuid>&mac=<mac>."""
    c = ctx(request)
    source = request.remote or ""
    token = request.query.get("t", "")
    blocked, alert = c.config_limiter.blocked(source, time.monotonic())
    if blocked:
        return _rate_limited(c, source, alert=alert)
    try:
        machine, token_id = await _check(c, request, token, source)
        body = await _render(c, machine)
        await _deliver(c, machine, token_id, source, len(body))
    except RefusedError as refusal:
        return _refused(c, request, refusal, source)
    c.metrics.config_fetches.labels("served").inc()
    return web.Response(body=body, content_type=CONFIG_CONTENT_TYPE, headers={"Cache-Control": "no-store"})


async def _deliver(c: WebContext, machine: MachineRecord, token_id: int, source: str, size: int) -> None:
    """Check 7: spend the token, move the machine to ConfigServed; RefusedError if either lost a race."""
    now = utcnow()
    if not await c.tokens.spend(token_id, source, now=now):
        raise RefusedError(403, "token-replayed", Severity.ALERT)
    served = await lifecycle.move(
        c.rt.store,
        machine,
        Signal.CONFIG_SERVED,
        "config fetched",
        now=now,
        kind="config.served",
        data={"source": source, "token_id": token_id, "bytes": size},
    )
    if not served:
        raise RefusedError(403, "not-provisioning")


def _rate_limited(c: WebContext, source: str, *, alert: bool) -> web.Response:
    c.metrics.config_fetches.labels("rate_limited").inc()
    if alert:
        c.rt.events.emit(
            Event(
                kind="config.rate_limited",
                at=utcnow(),
                severity=Severity.ALERT,
                message="too many refused config fetches from one address",
                data={
                    "source": source,
                    "limit": c.config_limiter.limit,
                    "window_s": c.config_limiter.window_s,
                },
            )
        )
    retry = str(int(c.config_limiter.window_s))
    return web.Response(status=429, text="refused: rate-limited\n", headers={"Retry-After": retry})


def _refused(c: WebContext, request: web.Request, refusal: RefusedError, source: str) -> web.Response:
    if refusal.status != 503:
        c.config_limiter.refused(source, time.monotonic())
    outcome = "failed" if refusal.status == 503 else "refused"
    c.metrics.config_fetches.labels(outcome).inc()
    c.metrics.config_refusals.labels(refusal.reason).inc()
    c.rt.events.emit(
        Event(
            kind="config.refused",
            at=utcnow(),
            machine=request.get(TOKEN_MACHINE),
            severity=refusal.severity,
            message=f"config fetch refused: {refusal.reason}",
            data={
                "reason": refusal.reason,
                "source": source,
                "token_id": request.get(TOKEN_ID),
                "mac": decode_label(request.query.get("mac", ""))[:64],
                "uuid": decode_label(request.query.get("uuid", ""))[:64],
            },
        )
    )
    return web.Response(status=refusal.status, text=f"refused: {refusal.reason}\n")


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    return [web.get("/config", fetch_config)]
