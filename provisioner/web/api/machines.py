"""/api/v1/machines: list, show, events, provision, deprovision, release, power."""

from __future__ import annotations

import logging

from aiohttp import web

from provisioner.events import Severity
from provisioner.model import Desired, MachineState
from provisioner.power.base import REASONS, PowerFailedError
from provisioner.web.api.common import (
    MAX_ID,
    audit,
    checked_name,
    int_param,
    json_error,
    json_ok,
    read_json_object,
)
from provisioner.web.context import ctx
from provisioner.web.protocols import POWER_ACTIONS

__all__ = ["routes"]

log = logging.getLogger(__name__)

BOOT_DEVICES = ("pxe", "disk")
INTERNAL_REASON = REASONS["internal"]
STATES = tuple(s.value for s in MachineState)


async def list_machines(request: web.Request) -> web.Response:
    """GET /api/v1/machines?state=&cluster=."""
    state = request.query.get("state")
    cluster = request.query.get("cluster")
    if state is not None and state not in STATES:
        raise web.HTTPBadRequest(text=f"state must be one of {', '.join(STATES)}")
    items = [
        m
        for m in await ctx(request).rt.store.list_machines()
        if (state is None or m.state == state) and (cluster is None or m.cluster == cluster)
    ]
    return json_ok({"items": items})


async def show_machine(request: web.Request) -> web.Response:
    """GET /api/v1/machines/{name}."""
    machine = await ctx(request).rt.store.get_machine(checked_name(request))
    if machine is None:
        raise web.HTTPNotFound(text="no such machine")
    return json_ok(machine)


async def machine_events(request: web.Request) -> web.Response:
    """GET /api/v1/machines/{name}/events?limit=&before=."""
    c = ctx(request)
    name = checked_name(request)
    limit = int_param(request, "limit", 100, 1, 1000) or 100
    before = int_param(request, "before", None, 1, MAX_ID)
    if await c.rt.store.get_machine(name) is None:
        raise web.HTTPNotFound(text="no such machine")
    items = await c.rt.store.list_events(machine=name, before_id=before, limit=limit)
    return json_ok({"items": items, "next_before": items[-1].id if len(items) == limit else None})


async def _set_desired(request: web.Request, desired: Desired, what: str) -> web.Response:
    c = ctx(request)
    name = checked_name(request)
    await read_json_object(request, set())
    event = audit(request, what, machine=name, data={"desired": desired.value})
    # attempts=0 marks a fresh operator request: the reconciler starts a new run at once
    # instead of treating it as a retry of the last failed one (provisioner/reconciler.py).
    if not await c.rt.store.update_machine(name, desired=desired.value, attempts=0, event=event):
        raise web.HTTPNotFound(text="no such machine")
    if desired in (Desired.DEPROVISIONED, Desired.REPROVISION):
        await c.tokens.revoke_machine(name)
    return json_ok({"machine": name, "desired": desired.value}, status=202)


async def provision(request: web.Request) -> web.Response:
    """POST /api/v1/machines/{name}/provision: ask the reconciler to provision it."""
    return await _set_desired(request, Desired.PROVISIONED, "provision")


async def deprovision(request: web.Request) -> web.Response:
    """POST /api/v1/machines/{name}/deprovision: ask the reconciler to wipe and release it."""
    return await _set_desired(request, Desired.DEPROVISIONED, "deprovision")


async def reprovision(request: web.Request) -> web.Response:
    """POST /api/v1/machines/{name}/reprovision: deprovision, then provision from scratch."""
    return await _set_desired(request, Desired.REPROVISION, "reprovision")


async def release(request: web.Request) -> web.Response:
    """POST /api/v1/machines/{name}/release: unfreeze a window frozen by a spoofing alert."""
    c = ctx(request)
    name = checked_name(request)
    await read_json_object(request, set())
    if await c.rt.store.get_machine(name) is None:
        raise web.HTTPNotFound(text="no such machine")
    hold = await c.holds.get(name)
    released = await c.holds.release(name)
    if released:
        data = {} if hold is None else {"first": hold.first, "second": hold.second}
        c.rt.events.emit(audit(request, "release", machine=name, data=data))
    return json_ok({"machine": name, "released": released})


def _power_args(body: dict[str, object]) -> tuple[str, dict[str, object]]:
    action = body.get("action")
    if not isinstance(action, str) or action not in POWER_ACTIONS:
        raise web.HTTPBadRequest(text=f"action must be one of {', '.join(POWER_ACTIONS)}")
    kw: dict[str, object] = {}
    if action == "bootdev":
        device = body.get("device")
        if device not in BOOT_DEVICES:
            raise web.HTTPBadRequest(text="bootdev needs device: pxe or disk")
        kw["device"] = device
        persistent = body.get("persistent", False)
        if not isinstance(persistent, bool):
            raise web.HTTPBadRequest(text="persistent must be a boolean")
        kw["persistent"] = persistent
    elif "device" in body or "persistent" in body:
        raise web.HTTPBadRequest(text="device and persistent belong to bootdev only")
    return action, kw


async def power(request: web.Request) -> web.Response:
    """POST /api/v1/machines/{name}/power {"action": ..., "device": ..., "persistent": ...}."""
    c = ctx(request)
    name = checked_name(request)
    action, kw = _power_args(await read_json_object(request, {"action", "device", "persistent"}))
    service = c.rt.power
    if service is None:
        raise web.HTTPServiceUnavailable(text="power service not running")
    if await c.rt.store.get_machine(name) is None:
        raise web.HTTPNotFound(text="no such machine")
    c.metrics.power_calls.labels(action).inc()
    try:
        result = dict(await service.power_action(name, action, **kw))
    except KeyError:
        raise web.HTTPNotFound(text="no such machine") from None
    except LookupError as exc:
        c.metrics.power_failures.labels(action).inc()
        raise web.HTTPConflict(text=f"no BMC: {exc}") from None
    except ValueError as exc:
        c.metrics.power_failures.labels(action).inc()
        raise web.HTTPBadRequest(text=str(exc)) from None
    except PowerFailedError as exc:
        # The driver's typed outcome goes to the caller whole: what happened, which BMC,
        # which inventory fields to check (never the password; PowerError messages hold none).
        c.metrics.power_failures.labels(action).inc()
        log.warning("power %s %s failed: %s", action, name, exc)
        c.rt.events.emit(
            audit(
                request,
                f"power {action}",
                machine=name,
                data={"ok": False, "reason": exc.reason, **kw},
                severity=Severity.WARNING,
            )
        )
        status = 500 if exc.reason == INTERNAL_REASON else 502
        return json_error(status, str(exc), reason=exc.reason, bmc=exc.bmc, check=list(exc.check))
    except Exception as exc:
        c.metrics.power_failures.labels(action).inc()
        log.exception("power %s %s failed inside the power service", action, name)
        c.rt.events.emit(
            audit(
                request,
                f"power {action}",
                machine=name,
                data={"ok": False, "reason": INTERNAL_REASON, **kw},
                severity=Severity.WARNING,
            )
        )
        detail = f"internal error in the power service ({type(exc).__name__}); see the daemon log"
        return json_error(500, detail, reason=INTERNAL_REASON)
    if action != "status":
        c.rt.events.emit(audit(request, f"power {action}", machine=name, data={"ok": True, **kw}))
    return json_ok({"machine": name, "action": action, "result": result})


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    base = "/api/v1/machines"
    return [
        web.get(base, list_machines),
        web.get(base + "/{name}", show_machine),
        web.get(base + "/{name}/events", machine_events),
        web.post(base + "/{name}/provision", provision),
        web.post(base + "/{name}/deprovision", deprovision),
        web.post(base + "/{name}/reprovision", reprovision),
        web.post(base + "/{name}/release", release),
        web.post(base + "/{name}/power", power),
    ]
