"""TLS for the `[api]` listener: the server's context and the CLI's pinned client context.

The certificate is `[api] tls_cert`/`tls_key`, or one generated at first start into the
state directory (`api-tls.crt`, `api-tls.key`, key mode 0600): ECDSA P-256, self-signed,
naming the listen address, localhost and 127.0.0.1. The CLI reads the same settings and
trusts exactly that certificate (pinning: `VERIFY_X509_PARTIAL_CHAIN` makes the one
certificate a trust anchor, and host names are not checked because the pin is stronger), so
no CA is involved and a certificate swapped on the path fails the handshake before the
bearer token is sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioner.settings import Settings

__all__ = ["cert_paths", "client_context", "ensure_certificate", "fingerprint", "server_context"]

GENERATED_CERT = "api-tls.crt"
GENERATED_KEY = "api-tls.key"
VALIDITY_DAYS = 3650


def cert_paths(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key files the API uses (configured, or generated)."""
    api = settings.api
    if api.tls_cert is not None and api.tls_key is not None:
        return api.tls_cert, api.tls_key
    return settings.state_dir / GENERATED_CERT, settings.state_dir / GENERATED_KEY


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate's DER form, as colon-separated hex."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _names(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host:
            names.append(x509.DNSName(host))
    else:
        if not address.is_unspecified and str(address) != "127.0.0.1":
            names.append(x509.IPAddress(address))
    return names


def ensure_certificate(settings: Settings) -> Path:
    """The certificate file, generating a self-signed one into state_dir when none is configured."""
    cert_file, key_file = cert_paths(settings)
    if settings.api.tls_cert is not None or cert_file.exists():
        return cert_file
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provisioner api")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(_names(settings.api.host_port[0])), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Key first, exclusively and 0600: a certificate never exists without its key.
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    tmp = cert_file.with_suffix(".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(cert_file)
    return cert_file


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The API listener's TLS context, or None for plain HTTP."""
    if not settings.api.uses_tls:
        return None
    cert_file = ensure_certificate(settings)
    _, key_file = cert_paths(settings)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(settings: Settings) -> ssl.SSLContext:
    """A client context trusting exactly the API's certificate (raises OSError if unreadable)."""
    cert_file, _ = cert_paths(settings)
    pem = cert_file.read_bytes()
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=pem.decode("ascii"))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False  # the pinned certificate is the identity
    context.verify_mode = ssl.CERT_REQUIRED
    return context
