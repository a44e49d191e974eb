"""Is a node running Talos under our cluster's PKI?  Check its API certificate.

A Talos node that joined the cluster serves its API (apid, TCP 50000) with a certificate
that trustd (or the node itself, on a control plane) issued from the cluster's OS CA and
that names the node's addresses.  Connecting with TLS, taking the peer certificate and
verifying it against the OS CA proves the machine booted our config; no credentials
are needed, which is why hostname verification is off and the CA check is done here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provisioner.talos.pki import CertAndKey, load_cert, load_private_key, verify_signed_by

__all__ = ["APID_PORT", "TrustResult", "check_trusted", "evaluate_peer_certificate"]

APID_PORT = 50000


@dataclass(frozen=True, slots=True)
class TrustResult:
    """Outcome of a trust check: ``ok`` and, when not ok, why."""

    ok: bool
    reason: str


def evaluate_peer_certificate(der: bytes, os_ca_pem: bytes, expected_ip: str, now: datetime) -> TrustResult:
    """Decide whether a peer certificate chains to the OS CA and names ``expected_ip``."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        return TrustResult(ok=False, reason=f"peer certificate does not parse: {exc}")
    ca = load_cert(os_ca_pem)
    if not verify_signed_by(cert, ca):
        issuer = cert.issuer.rfc4514_string()
        return TrustResult(
            ok=False, reason=f"certificate issued by {issuer!r} is not signed by the cluster OS CA"
        )
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if not start <= now <= end:
        window = f"{start.isoformat()} .. {end.isoformat()}"
        return TrustResult(ok=False, reason=f"certificate not valid at {now.isoformat()} ({window})")
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        ips = []
    try:
        wanted = ipaddress.ip_address(expected_ip)
    except ValueError:
        return TrustResult(ok=False, reason=f"expected address {expected_ip!r} is not an IP address")
    if wanted not in {ipaddress.ip_address(ip) for ip in ips}:
        return TrustResult(
            ok=False, reason=f"certificate does not name {expected_ip} (IP SANs: {ips or 'none'})"
        )
    return TrustResult(ok=True, reason="certificate chains to the cluster OS CA and names the machine")


def _client_context(client_cert: CertAndKey | None, tmp: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # We verify the chain ourselves against the cluster's OS CA (Ed25519, which the
    # system store knows nothing of) and check the IP SAN explicitly.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        # apid may ask for a client certificate: present the admin one when we have it.
        key = load_private_key(client_cert.key)
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        cert_file, key_file = tmp / "client.crt", tmp / "client.key"
        cert_file.write_bytes(client_cert.crt)
        key_file.write_bytes(pkcs8)
        context.load_cert_chain(cert_file, key_file)
    return context


async def check_trusted(
    address: str,
    port: int,
    os_ca_pem: bytes,
    expected_ip: str,
    timeout: float,
    *,
    client_cert: CertAndKey | None = None,
    now: datetime | None = None,
) -> TrustResult:
    """TLS-connect to ``address:port`` and check the node's certificate (see module doc)."""
    with TemporaryDirectory(prefix="trustcheck-") as tmp:
        context = _client_context(client_cert, Path(tmp))
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(address, port, ssl=context, server_hostname=None)
        except TimeoutError:
            return TrustResult(ok=False, reason=f"timed out after {timeout}s connecting to {address}:{port}")
        except ssl.SSLError as exc:
            return TrustResult(
                ok=False, reason=f"TLS handshake with {address}:{port} failed: {exc.reason or exc}"
            )
        except OSError as exc:
            return TrustResult(ok=False, reason=f"cannot connect to {address}:{port}: {exc.strerror or exc}")
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        # The verdict does not depend on a clean close.
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        return TrustResult(ok=False, reason=f"{address}:{port} presented no certificate")
    return evaluate_peer_certificate(der, os_ca_pem, expected_ip, now or datetime.now(UTC))
