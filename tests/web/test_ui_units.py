"""Console logic without a browser: timeline runs, sessions and CSRF, row escaping, stream gate."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import yaml
from uienv import TOKEN, UiServer, add_machines, http
from webenv import Env

from provisioner.store.records import MachineRecord
from provisioner.web.ui.feed import Message
from provisioner.web.ui.pages import inventory_yaml
from provisioner.web.ui.rows import RowCache
from provisioner.web.ui.session import Sessions, csrf_ok
from provisioner.web.ui.timeline import BAR_WIDTH, END_MARK, Transition, human, runs
from provisioner.web.ui.users import Identity

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_runs_split_at_power_on_with_durations() -> None:
    moves = [
        Transition(at(0), "PoweringOn"),
        Transition(at(40), "Netbooting"),
        Transition(at(100), "Failed", "config fetch timed out"),
        Transition(at(200), "PoweringOn"),
        Transition(at(230), "Netbooting"),
        Transition(at(250), "Provisioned"),
    ]
    out = runs(moves, now=at(300))
    assert [r.number for r in out] == [2, 1]  # newest first
    newest, first = out
    assert [(b.state, b.duration_s) for b in first.bars] == [
        ("PoweringOn", 40.0),
        ("Netbooting", 60.0),
        ("Failed", 100.0),
    ]
    assert first.outcome == "Failed"
    assert [(b.state, b.duration_s) for b in newest.bars] == [
        ("PoweringOn", 30.0),
        ("Netbooting", 20.0),
        ("Provisioned", 50.0),  # still there at `now`
    ]
    # The state a run rests in is an end mark, not counted in the run's duration.
    assert first.duration_s == 100.0
    assert newest.duration_s == 50.0
    assert first.bars[-1].resting and first.bars[-1].width == END_MARK
    # Geometry: runs share one scale; the longest run plus its end mark fills the width.
    assert first.bars[-1].x + first.bars[-1].width == BAR_WIDTH
    assert newest.bars[1].x == round(30 * (BAR_WIDTH - END_MARK) / 100)


def test_runs_empty_and_human() -> None:
    assert runs([], now=T0) == []
    assert [human(s) for s in (4.25, 185, 7620, 273600)] == ["4.2s", "3m05s", "2h07m", "3d04h"]


def test_sessions_expire_and_csrf_is_per_session() -> None:
    now = [1000.0]
    table = Sessions(ttl_s=60, clock=lambda: now[0])
    a = table.create(Identity("api:admin", admin=True))
    b = table.create(Identity("api:admin", admin=True))
    assert table.get(a.sid) is a
    assert a.csrf != b.csrf
    assert csrf_ok(a, a.csrf)
    assert not csrf_ok(a, b.csrf)
    assert not csrf_ok(a, "")
    now[0] += 61
    assert table.get(a.sid) is None
    assert table.get("") is None


def test_row_html_escapes_everything_and_is_cached() -> None:
    cache = RowCache()
    rec = MachineRecord(name="n1", macs=("52:54:00:00:00:01",), hostname="<img src=x onerror=alert(1)>")
    row = {
        "name": "n1",
        "cluster": "<b>",
        "role": "worker",
        "state": "Failed",
        "since": "",
        "attempts": 1,
        "ip": "",
        "mac": "52:54:00:00:00:01",
        "bmc": "none",
        "power": "unknown",
        "reason": '"><script>x</script>',
        "hostname": rec.hostname,
    }
    built = []

    def make(_: MachineRecord) -> dict[str, object]:
        built.append(1)
        return row

    html = cache.html(rec, "unknown", 5.0, make)
    assert "<img" not in html and "<script>" not in html and "<b>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&#34;&gt;&lt;script&gt;" in html
    assert cache.html(rec, "unknown", 65.0, make).count("1m05s") == 1
    assert len(built) == 1  # the second view reused the row
    cache.html(rec, "on", 1.0, make)
    assert len(built) == 2  # a power change rebuilds it


def test_inventory_yaml_for_discovered() -> None:
    from provisioner.store.records import DiscoveredRecord

    d = DiscoveredRecord(
        mac="52:54:00:aa:bb:cc",
        uuid="11111111-2222-3333-4444-555555555501",
        serial=None,
        arch="amd64",
        vendor_class="PXEClient:Arch:00007",
        source="dhcp",
        seen_count=3,
        first_seen=T0,
        last_seen=T0,
    )
    text = inventory_yaml(d)
    assert text.startswith("---\nkind: Machine\nname: new-aabbcc\n")
    doc = yaml.safe_load(text)
    assert doc["macs"] == ["52:54:00:aa:bb:cc"]
    assert doc["uuid"] == "11111111-2222-3333-4444-555555555501"


def test_overflowing_subscriber_is_told_to_resync() -> None:
    from provisioner.web.ui.feed import QUEUE_LIMIT, ChangeFeed, FeedSource

    async def nothing() -> list[MachineRecord]:
        return []

    feed = ChangeFeed(FeedSource(load_all=nothing, changed_since=None, events_after=None))  # type: ignore[arg-type]
    queue = feed.subscribe()
    for i in range(QUEUE_LIMIT + 1):
        feed._publish(Message("event", None, {"i": i}))
    last = None
    while not queue.empty():
        last = queue.get_nowait()
    assert last is not None and last.kind == "resync"
    assert queue not in feed._subscribers


def test_pages_and_login_over_http(tmp_path: Path) -> None:
    server = UiServer(tmp_path)

    async def seed(store: object) -> None:
        await add_machines(store, [{"name": "n1", "mac": "52:54:00:00:00:01"}])  # type: ignore[arg-type]
        await store.record_discovered(  # type: ignore[attr-defined]
            "52:54:00:aa:bb:cc", arch="amd64", vendor_class="<script>alert(1)</script>", source="dhcp"
        )

    server.start(seed)
    try:
        status, headers, body = http("GET", server.base + "/ui/login")
        assert status == 200
        login_cookie = headers["Set-Cookie"].split(";")[0]
        csrf = body.split('name="csrf" value="')[1].split('"')[0]
        # The login form needs its double-submit token.
        assert http("POST", server.base + "/ui/login", data={"token": TOKEN, "csrf": csrf})[0] == 403
        status, headers, _ = http(
            "POST", server.base + "/ui/login", cookie=login_cookie, data={"token": TOKEN, "csrf": csrf}
        )
        assert status == 303
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        session = headers["Set-Cookie"].split(";")[0]
        for page in ("/ui/", "/ui/machines/n1", "/ui/clusters", "/ui/assets", "/ui/leases", "/ui/discovered"):
            status, headers, body = http("GET", server.base + page, cookie=session)
            assert status == 200, page
            assert headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'")
            assert '<script src="/ui/static/ui.js" defer></script>' in body
        body = http("GET", server.base + "/ui/discovered", cookie=session)[2]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body  # vendor class from the network, escaped
        assert "<script>alert" not in body
        assert "macs: [&#39;52:54:00:aa:bb:cc&#39;]" in body  # the YAML to copy
        assert http("GET", server.base + "/ui/machines/nope", cookie=session)[0] == 404
        assert http("GET", server.base + "/ui/static/ui.js")[0] == 200
        # Logout needs the CSRF token too.
        assert http("POST", server.base + "/ui/logout", cookie=session, data={})[0] == 403
    finally:
        server.stop()


async def test_console_is_mounted_on_the_api_listener_only(env: Env, http: aiohttp.ClientSession) -> None:
    async with http.get(env.api + "/ui/", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/ui/login"
    async with http.get(env.api + "/ui/stream") as response:
        assert response.status == 401
    # The machine-facing listener, which untrusted PXE machines reach, has no console.
    for path in ("/ui/", "/ui/login", "/ui/static/ui.js"):
        async with http.get(env.base + path, allow_redirects=False) as response:
            assert response.status == 404, path


pytestmark = pytest.mark.timeout(120)


def _login(server: UiServer, token: str = TOKEN) -> str:
    status, headers, body = http("GET", server.base + "/ui/login")
    login_cookie = headers["Set-Cookie"].split(";")[0]
    csrf = body.split('name="csrf" value="')[1].split('"')[0]
    status, headers, _ = http(
        "POST", server.base + "/ui/login", cookie=login_cookie, data={"token": token, "csrf": csrf}
    )
    assert status == 303
    return headers["Set-Cookie"].split(";")[0]


def test_talosconfig_download(tmp_path: Path) -> None:
    from uienv import add_cluster

    from provisioner.talos.contract import VersionContract
    from provisioner.talos.repository import StoreSecretsRepository
    from provisioner.talos.secrets import generate_bundle

    async def seed(store: object) -> None:
        await add_cluster(store, "prod")  # type: ignore[arg-type]
        await add_machines(
            store,  # type: ignore[arg-type]
            [
                {
                    "name": "cp1",
                    "cluster": "prod",
                    "role": "controlplane",
                    "ip": "10.77.0.10",
                    "mac": "52:54:00:00:00:0a",
                }
            ],
        )
        bundle = generate_bundle(T0, VersionContract(1, 13))
        await StoreSecretsRepository(store).put("prod", bundle)  # type: ignore[arg-type]

    server = UiServer(tmp_path)
    server.start(seed)
    try:
        session = _login(server)
        status, _, body = http("GET", server.base + "/ui/clusters", cookie=session)
        assert status == 200
        assert 'href="/ui/clusters/prod/talosconfig"' in body
        status, headers, body = http("GET", server.base + "/ui/clusters/prod/talosconfig", cookie=session)
        assert status == 200
        assert headers["Content-Disposition"] == 'attachment; filename="prod-talosconfig"'
        doc = yaml.safe_load(body)
        assert doc["context"] == "prod"
        assert doc["contexts"]["prod"]["endpoints"] == ["10.77.0.10"]
        assert http("GET", server.base + "/ui/clusters/prod/talosconfig")[0] == 303  # no session
        assert http("GET", server.base + "/ui/clusters/none/talosconfig", cookie=session)[0] == 404
    finally:
        server.stop()


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    config = state_dir.parent / "provisioner.toml"
    config.write_text(f'state_dir = "{state_dir}"\n')
    return subprocess.run(
        [str(Path(sys.executable).parent / "provisioner"), "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_per_user_token_from_the_cli(tmp_path: Path) -> None:
    server = UiServer(tmp_path)
    server.start()
    state_dir = tmp_path / "state"
    try:
        done = _cli(state_dir, "ui", "user", "add", "alice")
        assert done.returncode == 0, done.stderr
        token = done.stdout.strip()
        assert len(token) >= 40
        assert token not in (state_dir / "ui-users").read_text()  # only its hash is kept
        assert (state_dir / "ui-users").stat().st_mode & 0o777 == 0o600
        assert _cli(state_dir, "ui", "user", "add", "Bad Name").returncode == 2
        session = _login(server, token)
        status, _, body = http("GET", server.base + "/ui/", cookie=session)
        assert status == 200
        assert "ui:alice" in body
        # Not an admin: no talosconfig.
        assert http("GET", server.base + "/ui/clusters/prod/talosconfig", cookie=session)[0] == 403
        listed = _cli(state_dir, "ui", "user", "list")
        assert listed.stdout.startswith("alice\toperator\t")
        assert _cli(state_dir, "ui", "user", "remove", "alice").returncode == 0
        # A removed user's open session ends at the next request.
        status, headers, _ = http("GET", server.base + "/ui/", cookie=session)
        assert (status, headers["Location"]) == (303, "/ui/login")
        assert _cli(state_dir, "ui", "user", "remove", "alice").returncode == 1
    finally:
        server.stop()
