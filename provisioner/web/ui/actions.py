"""Machine actions from the console: power, PXE once, provision, reprovision, deprovision.

Each is a POST form carrying the session's CSRF token; the outcome is shown on the
machine page (a flash message) and recorded as an `api.change` audit event, as through
the REST API (provisioner/web/api/machines.py, whose semantics these follow).
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from aiohttp import web

from provisioner.events import Severity
from provisioner.power.base import PowerFailedError
from provisioner.web.api.common import NAME_RE
from provisioner.web.ui.app import SESSION, UI
from provisioner.web.ui.session import CSRF_HEADER, csrf_ok

__all__ = ["ACTIONS", "routes"]

log = logging.getLogger(__name__)

# action -> (label, power action and arguments, or the desired state)
POWER = {
    "power-on": ("on", {}),
    "power-off": ("off", {}),
    "power-cycle": ("cycle", {}),
    "pxe-once": ("bootdev", {"device": "pxe", "persistent": False}),
}
DESIRED = {"provision": "provisioned", "reprovision": "reprovision", "deprovision": "deprovisioned"}
ACTIONS = (*POWER, *DESIRED)
DESTRUCTIVE = frozenset({"power-off", "power-cycle", "reprovision", "deprovision"})
"""Asked for confirmation on the page (templates/ui/machine.html.j2, static/ui.js)."""


async def act(request: web.Request) -> web.StreamResponse:
    """POST /ui/machines/{name}/action: run one action; the result shows on the machine page."""
    ui = request.app[UI]
    session = request[SESSION]
    name = request.match_info["name"]
    if not NAME_RE.match(name):
        raise web.HTTPBadRequest(text="bad machine name")
    form = await request.post()
    presented = str(form.get("csrf", "")) or request.headers.get(CSRF_HEADER, "")
    if not csrf_ok(session, presented):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    action = str(form.get("action", ""))
    if action not in ACTIONS:
        raise web.HTTPBadRequest(text=f"action must be one of {', '.join(ACTIONS)}")
    if await ui.deps.store.get_machine(name) is None:
        raise web.HTTPNotFound(text="no such machine")
    if action in POWER:
        ok, text = await _power(request, name, action)
    else:
        ok, text = await _desired(request, name, action)
    session.flash, session.flash_ok = text, ok
    raise web.HTTPSeeOther(f"/ui/machines/{quote(name)}")


async def _power(request: web.Request, name: str, action: str) -> tuple[bool, str]:  # noqa: PLR0911 - one answer per outcome
    ui = request.app[UI]
    actor = request[SESSION].actor
    verb, kw = POWER[action]
    service = ui.deps.power()
    if service is None:
        return False, f"{action}: the power service is not running"
    try:
        result = dict(await service.power_action(name, verb, **kw))
    except KeyError:
        return False, f"{action}: no such machine"
    except LookupError as exc:
        return False, f"{action}: no BMC ({exc}); power it by hand"
    except ValueError as exc:
        return False, f"{action}: {exc}"
    except PowerFailedError as exc:
        ui.audit(
            request,
            actor,
            f"power {verb}",
            machine=name,
            data={"ok": False, "reason": exc.reason, **kw},
            severity=Severity.WARNING,
        )
        return False, f"{action} failed: {exc} (check {', '.join(exc.check) or 'the BMC'})"
    except Exception as exc:
        log.exception("console power %s %s failed inside the power service", verb, name)
        return False, f"{action}: internal error in the power service ({type(exc).__name__})"
    ui.audit(request, actor, f"power {verb}", machine=name, data={"ok": True, **kw})
    state = result.get("state")
    took = result.get("duration_s")
    detail = f", power {state}" if state else ""
    return True, f"{action}: done by {result.get('bmc', 'the BMC')} in {took}s{detail}"


async def _desired(request: web.Request, name: str, action: str) -> tuple[bool, str]:
    ui = request.app[UI]
    desired = DESIRED[action]
    from provisioner.events import Event, utcnow

    event = Event(
        kind="api.change",
        at=utcnow(),
        machine=name,
        actor=request[SESSION].actor,
        message=action,
        data={"action": action, "source": request.remote, "via": "ui", "desired": desired},
    )
    # attempts=0: a fresh operator request, not a retry (as POST /api/v1/machines/{name}/...).
    if not await ui.deps.store.update_machine(name, desired=desired, attempts=0, event=event):
        return False, f"{action}: no such machine"
    if desired in ("deprovisioned", "reprovision") and ui.deps.tokens is not None:
        await ui.deps.tokens.revoke_machine(name)
    return True, f"{action}: requested; the reconciler takes it from here (desired = {desired})"


def routes() -> list[web.RouteDef]:
    """The action route (relative to /ui)."""
    return [web.post("/machines/{name}/action", act)]
