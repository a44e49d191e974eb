"""The console's pages (GET) and the login/logout forms."""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import yaml
from aiohttp import web
from markupsafe import Markup

from provisioner.model import MachineState
from provisioner.web.ui.app import SESSION, UI, UiState
from provisioner.web.ui.feed import iso, now_utc
from provisioner.web.ui.session import COOKIE, LOGIN_COOKIE, csrf_ok, set_cookie
from provisioner.web.ui.timeline import Transition, runs

__all__ = ["render", "routes"]

STATES = tuple(s.value for s in MachineState)
LOGIN_TTL_S = 600
EVENT_PAGE = 200


def state(request: web.Request) -> UiState:
    """The console state of this request's application."""
    return request.app[UI]


def render(request: web.Request, name: str, *, status: int = 200, **values: Any) -> web.Response:  # noqa: ANN401
    """Render a template with the session (for the CSRF token and the flash message)."""
    session = request.get(SESSION)
    flash = ("", True)
    if session is not None and session.flash:
        flash = (session.flash, session.flash_ok)
        session.flash = ""
    text = (
        state(request)
        .jinja.get_template(name)
        .render(session=session, flash=flash[0], flash_ok=flash[1], path=request.path, **values)
    )
    return web.Response(text=text, content_type="text/html", status=status)


def _since(value: datetime | None, now: datetime) -> float:
    if value is None:
        return 0.0
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return max(0.0, (now - aware).total_seconds())


async def login_form(request: web.Request) -> web.Response:
    """GET /ui/login: the form, with a fresh double-submit token."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html.j2", login_csrf=token, error="")
    set_cookie(response, request, LOGIN_COOKIE, token, LOGIN_TTL_S)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    """POST /ui/login: check the token, start a session, go to the rack."""
    form = await request.post()
    pre = request.cookies.get(LOGIN_COOKIE, "")
    if not pre or not secrets.compare_digest(str(form.get("csrf", "")), pre):
        raise web.HTTPForbidden(text="login form expired: reload the page")
    identity = await state(request).deps.check_token(str(form.get("token", "")))
    if identity is None:
        fresh = secrets.token_urlsafe(24)
        response = render(request, "login.html.j2", status=401, login_csrf=fresh, error="invalid token")
        set_cookie(response, request, LOGIN_COOKIE, fresh, LOGIN_TTL_S)
        return response
    session = state(request).sessions.create(identity)
    response = web.HTTPSeeOther("/ui/")
    set_cookie(response, request, COOKIE, session.sid, int(state(request).sessions.ttl_s))
    response.del_cookie(LOGIN_COOKIE, path="/ui/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /ui/logout (CSRF-checked): end the session."""
    session = request[SESSION]
    form = await request.post()
    if not csrf_ok(session, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text="missing or wrong CSRF token")
    state(request).sessions.drop(session.sid)
    response = web.HTTPSeeOther("/ui/login")
    response.del_cookie(COOKIE, path="/ui/")
    raise response


async def rack(request: web.Request) -> web.Response:
    """GET /ui/?cluster=&state=: every machine, counts per state, filters."""
    ui = state(request)
    cluster = request.query.get("cluster", "")
    wanted = request.query.get("state", "")
    now = now_utc()
    machines = sorted(ui.feed.machines.values(), key=lambda m: m.name)
    counts = Counter(m.state for m in machines)
    clusters = sorted({m.cluster for m in machines if m.cluster})
    power = ui.feed.power
    html = "".join(
        ui.rows.html(m, power.get(m.name, "unknown"), _since(m.state_since, now), ui.feed.row)
        for m in machines
        if (not cluster or m.cluster == cluster) and (not wanted or m.state == wanted)
    )
    shown = html.count("<tr ")
    return render(
        request,
        "rack.html.j2",
        rows_html=Markup(html),  # noqa: S704 - every value escaped in rows.py
        shown=shown,
        total=len(machines),
        counts=[(s, counts.get(s, 0)) for s in STATES],
        clusters=clusters,
        cluster=cluster,
        wanted=wanted,
        states=STATES,
    )


async def machine(request: web.Request) -> web.Response:
    """GET /ui/machines/{name}: timeline, events, kernel log, lease and token state, actions."""
    ui = state(request)
    name = request.match_info["name"]
    record = await ui.deps.store.get_machine(name)
    if record is None:
        raise web.HTTPNotFound(text="no such machine")
    now = now_utc()
    events = await ui.deps.store.list_events(machine=name, limit=EVENT_PAGE)
    moves = [
        Transition(at=_aware(e.at), state=str(e.data.get("to", "")), reason=str(e.data.get("reason", "")))
        for e in await ui.deps.store.list_events(machine=name, kind="machine.transition", limit=1000)
        if e.data.get("to")
    ]
    leases = [lease for lease in await ui.deps.store.list_leases() if lease.get("machine") == name]
    tokens = await _tokens(ui, name)
    kernel: list[str] | None = None
    if ui.deps.kernel_log is not None:
        kernel = list(await ui.deps.kernel_log(name, 200))
    return render(
        request,
        "machine.html.j2",
        m=record,
        row=ui.feed.row(record) | {"age": _since(record.state_since, now)},
        runs=runs(moves, now),
        events=events,
        iso=iso,
        leases=leases,
        tokens=tokens,
        kernel=kernel,
        power_ready=ui.deps.power() is not None,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def _tokens(ui: UiState, name: str) -> list[dict[str, Any]]:
    """The machine's config tokens (hashes never shown): issued, expiry, used, revoked."""
    store = ui.deps.store
    if not hasattr(store, "session"):
        return []
    from sqlalchemy import select
    from sqlmodel import col

    from provisioner.store.tables import ConfigTokenRow

    async with store.session() as session:
        rows = (
            await session.execute(
                select(ConfigTokenRow)
                .where(col(ConfigTokenRow.machine) == name)
                .order_by(col(ConfigTokenRow.id).desc())
                .limit(10)
            )
        ).scalars()
        now = now_utc()
        out = []
        for r in rows:
            if r.revoked:
                status = "revoked"
            elif r.used_at is not None:
                status = "used"
            elif _aware(r.expires_at) <= now:
                status = "expired"
            else:
                status = "valid"
            out.append(
                {
                    "issued_at": iso(r.issued_at),
                    "expires_at": iso(r.expires_at),
                    "issued_to": r.issued_to,
                    "used_by": r.used_by,
                    "status": status,
                }
            )
        return out


async def clusters(request: web.Request) -> web.Response:
    """GET /ui/clusters: each cluster, its versions and members with their states."""
    ui = state(request)
    members: dict[str, list[Any]] = {}
    for m in sorted(ui.feed.machines.values(), key=lambda m: m.name):
        members.setdefault(m.cluster or "", []).append(m)
    items = [(c, members.get(c.name, [])) for c in await ui.deps.store.list_clusters()]
    return render(request, "clusters.html.j2", clusters=items, unassigned=members.get("", []))


async def talosconfig(request: web.Request) -> web.Response:
    """GET /ui/clusters/{name}/talosconfig: an admin talosconfig (admins only)."""
    session = request[SESSION]
    if not session.admin:
        raise web.HTTPForbidden(text="admins only")
    ui = state(request)
    name = request.match_info["name"]
    from provisioner.talos.repository import StoreSecretsRepository
    from provisioner.talos.talosconfig import generate_talosconfig

    bundle = await StoreSecretsRepository(ui.deps.store).get(name)
    if bundle is None:
        raise web.HTTPNotFound(text="no secrets for this cluster yet")
    endpoints = [
        m.ip or m.hostname or m.name
        for m in ui.feed.machines.values()
        if m.cluster == name and m.role == "controlplane"
    ]
    text = generate_talosconfig(name, endpoints, bundle.os, datetime.now(UTC))
    ui.audit(request, session.actor, "talosconfig download", data={"cluster": name})
    return web.Response(
        text=text,
        content_type="application/yaml",
        headers={"Content-Disposition": f'attachment; filename="{name}-talosconfig"'},
    )


async def assets(request: web.Request) -> web.Response:
    """GET /ui/assets: boot asset sets, their files, sizes, sha256 and users."""
    ui = state(request)
    items: list[tuple[Any, list[str]]] = []
    if ui.deps.assets is not None:
        items = [(a, await ui.deps.assets.users(a.name)) for a in await ui.deps.assets.all()]
    return render(request, "assets.html.j2", sets=items)


async def leases(request: web.Request) -> web.Response:
    """GET /ui/leases: every DHCP lease."""
    return render(request, "leases.html.j2", leases=await state(request).deps.store.list_leases())


async def discovered(request: web.Request) -> web.Response:
    """GET /ui/discovered: unknown machines, each with inventory YAML to copy."""
    items = await state(request).deps.store.list_discovered()
    return render(request, "discovered.html.j2", items=[(d, inventory_yaml(d)) for d in items], iso=iso)


def inventory_yaml(d: Any) -> str:  # noqa: ANN401 - a DiscoveredRecord
    """An inventory Machine document for a discovered machine (name and cluster to fill in)."""
    doc: dict[str, Any] = {
        "kind": "Machine",
        "name": "new-" + d.mac.replace(":", "")[-6:],
        "cluster": "CLUSTER",
        "role": "worker",
        "macs": [d.mac],
    }
    if d.uuid:
        doc["uuid"] = d.uuid
    if d.serial:
        doc["serial"] = d.serial
    if d.arch:
        doc["arch"] = d.arch
    return "---\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)


def routes() -> list[web.RouteDef]:
    """The page routes (relative to /ui)."""
    return [
        web.get("/login", login_form),
        web.post("/login", login),
        web.post("/logout", logout),
        web.get("/", rack),
        web.get("/machines/{name}", machine),
        web.get("/clusters", clusters),
        web.get("/clusters/{name}/talosconfig", talosconfig),
        web.get("/assets", assets),
        web.get("/leases", leases),
        web.get("/discovered", discovered),
    ]
