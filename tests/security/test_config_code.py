"""H1's per-boot code (cluster `configCode`): a token alone no longer fetches the config.

Each test runs the real daemon. The attacker (127.0.0.2) knows only the victim's MAC and,
in proxy mode, asks before the machine does, so it holds the token; what it lacks is the
code the daemon showed the operator, which Talos substitutes for `${code}` once the
operator typed it on the machine's console.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from .secenv import ATTACKER, MAC, UUID, Daemon, request
from .test_spoofing import CA_KEY, alerts, provision, script, token_in

pytestmark = pytest.mark.slow  # each test starts a real daemon

CODE_VAR = "code=%24%7Bcode%7D"  # `${code}` hidden from iPXE, decoded by Talos


def fetch(d: Daemon, token: str, source: str, code: str | None) -> tuple[int, bytes]:
    tail = "" if code is None else f"&code={code}"
    r = request(f"{d.base}/config?t={token}&uuid={UUID}&mac={MAC.replace(':', '%3A')}{tail}", source=source)
    return r.status, r.body


def shown_code(d: Daemon) -> str:
    """The code as the operator sees it: the event in the API, the CLI's events and show."""
    (event,) = [e for e in d.wait_events(lambda ev: any(e["kind"] == "config.code" for e in ev))
                if e["kind"] == "config.code"]  # fmt: skip
    code = event["data"]["code"]
    assert re.fullmatch(r"[A-HJKMNP-Z2-9]{8}", code)
    assert code in d.cli("machines", "events", "victim").stdout
    show: dict[str, Any] = json.loads(d.cli("machines", "show", "victim", "--json").stdout)
    assert show["config_code"] == code
    return str(code)


def test_token_without_the_code_gets_no_config(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(dhcp_mode="proxy", config_code=True)
    provision(d)
    # The spoofer asks first and gets the token: proxy mode cannot tell it from the machine.
    text = script(d, ATTACKER)
    token = token_in(text)
    assert token is not None
    assert CODE_VAR in text
    code = shown_code(d)
    wrong = "ABCDEFGH" if code != "ABCDEFGH" else "HGFEDCBA"
    for presented, reason in (
        (None, "code-missing"),
        ("%24%7Bcode%7D", "code-missing"),
        (wrong, "code-wrong"),
    ):
        status, body = fetch(d, token, ATTACKER, presented)
        assert status == 403
        assert reason.encode() in body
        assert not CA_KEY.search(body)
    refused = [e for e in alerts(d, ("config.refused", "code-missing"), ("config.refused", "code-wrong"))
               if e["kind"] == "config.refused"]  # fmt: skip
    assert sorted(e["data"]["reason"] for e in refused) == ["code-missing", "code-missing", "code-wrong"]
    assert all(e["data"]["source"] == ATTACKER for e in refused)
    assert d.cli("machines", "show", "victim", "--json").stdout.count('"Netbooting"') == 1


def test_the_right_code_gets_the_config_once(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(dhcp_mode="proxy", config_code=True)
    provision(d)
    text = script(d, "127.0.0.1")
    token = token_in(text)
    assert token is not None
    assert CODE_VAR in text
    code = shown_code(d)
    # Typed by hand: lower case and a trailing blank are forgiven (Talos encodes the blank).
    status, body = fetch(d, token, "127.0.0.1", code.lower() + "+")
    assert status == 200, body
    assert CA_KEY.search(body)
    status, body = fetch(d, token, "127.0.0.1", code)
    assert status == 403
    assert b"token-replayed" in body


def test_a_cluster_without_the_field_is_unchanged(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(dhcp_mode="proxy")
    provision(d)
    text = script(d, "127.0.0.1")
    token = token_in(text)
    assert token is not None
    assert "code=" not in text
    status, body = fetch(d, token, "127.0.0.1", None)
    assert status == 200, body
    assert CA_KEY.search(body)
    assert d.events("config.code") == []
    assert "config_code" not in json.loads(d.cli("machines", "show", "victim", "--json").stdout)
