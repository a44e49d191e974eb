"""Issue 14 (medium): the admin API and /metrics off the machine network.

Before the fix one listener served everything: power, reprovision and the bearer token
travelled on the plain-HTTP port untrusted PXE machines reach. Now the machine listener
answers 404 for /api/v1/* and /metrics; they live on `[api] listen`, optionally HTTPS with
a certificate the CLI pins.
"""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .secenv import ATTACKER, Daemon, request

pytestmark = pytest.mark.slow  # each test starts a real daemon (~20-60 s under load)


def test_machine_listener_has_no_api_or_metrics(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(secrets=False)
    assert d.base != d.api
    for path in ("/api/v1/openapi.json", "/api/v1/machines", "/api/v1/machines/victim/power", "/metrics"):
        for method in ("GET", "POST"):
            r = request(d.base + path, method=method, source=ATTACKER, headers=d.auth(), body=b"{}")
            assert r.status in (404, 405), (path, method, r.status)
            assert b"victim" not in r.body
    # What machines need is still there.
    assert request(d.base + "/boot.ipxe", source=ATTACKER).text.startswith("#!ipxe")
    assert request(d.base + "/healthz", source=ATTACKER).status == 200
    # The API and metrics answer on [api] listen (loopback here).
    assert request(d.api + "/api/v1/machines").status == 401
    machines = request(d.api + "/api/v1/machines", headers=d.auth())
    assert machines.status == 200
    assert [m["name"] for m in machines.json()["items"]] == ["victim"]  # type: ignore[index]
    assert request(d.api + "/api/v1/openapi.json").status == 200
    assert b"# TYPE provisioner_http_requests_total" in request(d.api + "/metrics").body
    # The CLI finds the API from the same settings.
    assert "not frozen" in d.cli("machines", "release", "victim").stdout


def _self_signed() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provisioner api")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_cli_pins_the_generated_certificate(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(secrets=False, api_extra="tls = true")
    cert = d.state / "api-tls.crt"
    key = d.state / "api-tls.key"
    assert cert.exists()
    assert key.stat().st_mode & 0o777 == 0o600
    # HTTPS only: a plain-HTTP request to the API port gets no API answer.
    plain = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", d.api.replace("https", "http") + "/metrics"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.stdout != "200"
    # curl trusting exactly the generated certificate (no host check needed for 127.0.0.1).
    ok = subprocess.run(
        ["curl", "-sf", "--cacert", str(cert), d.api + "/metrics"], capture_output=True, check=False
    )
    assert ok.returncode == 0
    assert b"# TYPE" in ok.stdout
    out = d.cli("machines", "release", "victim", "--json")
    assert '"released": false' in out.stdout


def test_cli_refuses_a_swapped_certificate(start_daemon: Callable[..., Daemon]) -> None:
    d = start_daemon(secrets=False, api_extra="tls = true")
    # The CLI pins the certificate file; a server presenting anything else is refused
    # before the bearer token is sent.
    (d.state / "api-tls.crt").write_bytes(_self_signed())
    out = d.cli("machines", "release", "victim", check=False)
    assert out.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in out.stdout + out.stderr
    # And a default client (system CAs) does not trust the generated certificate either.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(d.api + "/healthz", context=ssl.create_default_context(), timeout=10)  # noqa: S310
