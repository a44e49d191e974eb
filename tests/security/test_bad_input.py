"""Issue 14 (low, web/API): bad input is a 4xx, tokens never reach the log, assets cannot
redirect the config download. Each against one real daemon, over the wire."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .secenv import ATTACKER, Daemon, make_daemon, request

pytestmark = pytest.mark.slow  # one real daemon for the module


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemon = make_daemon(tmp_path_factory.mktemp("bad-input"), secrets=False)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def raw(url: str, head: bytes) -> bytes:
    """Send raw request bytes (headers a client library would refuse to send); the answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "value",
    [b"Bearer \xff\xfe\x80", b"\xc3\x28 x", b"Bearer \xed\xa0\x80", b"Bearer " + bytes(range(128, 256))],
)
def test_non_utf8_authorization_is_401(d: Daemon, value: bytes) -> None:
    head = (
        b"GET /api/v1/machines HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + value
        + b"\r\nConnection: close\r\n\r\n"
    )
    answer = raw(d.api, head)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 401), answer[:300]
    assert b"Traceback" not in answer
    assert b"victim" not in answer


@pytest.mark.parametrize(
    "since",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "0000-01-01T00:00:00Z",
        "2026-13-45T99:99:99Z",
    ],
)
def test_out_of_range_since_is_400(d: Daemon, since: str) -> None:
    r = request(f"{d.api}/api/v1/events?since={since.replace('+', '%2B')}", headers=d.auth())
    assert r.status == 400, r.text
    assert r.json()["error"] == "Bad Request"  # type: ignore[index]


@pytest.mark.parametrize("body", [b"[" * 60_000, b'{"a":' * 12_000, b"[" * 3000 + b"]" * 3000])
def test_deeply_nested_json_is_400(d: Daemon, body: bytes) -> None:
    r = request(
        f"{d.api}/api/v1/machines/victim/provision",
        method="POST",
        headers={**d.auth(), "Content-Type": "application/json"},
        body=body,
    )
    assert r.status == 400, r.text


def test_percent_encoded_token_key_is_redacted(d: Daemon) -> None:
    secrets = {"%74": "Sekr1tTokenA", "%2574": "Sekr1tTokenB", "t": "Sekr1tTokenC"}
    for key, value in secrets.items():
        r = request(f"{d.base}/config?mac=x&{key}={value}", source=ATTACKER)
        assert r.status in (403, 429)
    log = d.wait_log(lambda text: text.count("/config?mac=x&") >= len(secrets))
    assert log.count("/config?mac=x&") >= len(secrets), log[-2000:]
    for value in secrets.values():
        assert value not in log
    assert "%74=REDACTED" in log


def test_asset_cmdline_cannot_carry_talos_config(d: Daemon, tmp_path: Path) -> None:
    (tmp_path / "k").write_bytes(b"k" * 64)
    (tmp_path / "i").write_bytes(b"i" * 64)
    for cmdline in (
        "talos.config=http://evil.example/c",
        "quiet talos.config=x",
        "initrd=x",
        "talos.platform=aws",
    ):
        out = d.cli(
            "assets", "import", "evil", "--kernel", str(tmp_path / "k"), "--initramfs", str(tmp_path / "i"),
            "--cmdline", cmdline, check=False,
        )  # fmt: skip
        assert out.returncode != 0, cmdline
        assert "set by the provisioner" in out.stdout + out.stderr
    assert "evil" not in d.cli("assets", "list").stdout
