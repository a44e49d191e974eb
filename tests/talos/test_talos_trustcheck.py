"""Trust check against TLS servers on loopback presenting various certificates."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from provisioner.talos.pki import CertAndKey, LeafSpec, issue_leaf, load_private_key, subject_name
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.talosconfig import admin_certificate
from provisioner.talos.trustcheck import check_trusted, evaluate_peer_certificate

NOW = datetime.now(UTC)


def _leaf(
    ca: CertAndKey, ips: tuple[str, ...], validity: timedelta = timedelta(hours=24), start: datetime = NOW
) -> CertAndKey:
    spec = LeafSpec(
        subject=subject_name(common_name="node"), validity=validity, server_auth=True, ip_addresses=ips
    )
    return issue_leaf(ca, spec, start - timedelta(minutes=1), kind="ecdsa")


@asynccontextmanager
async def _tls_server(
    identity: CertAndKey, tmp_path: Path, require_client: CertAndKey | None = None
) -> AsyncIterator[int]:
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    crt.write_bytes(identity.crt)
    key.write_bytes(load_private_key(identity.key).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    if require_client is not None:
        (tmp_path / "client-ca.crt").write_bytes(require_client.crt)
        context.load_verify_locations(tmp_path / "client-ca.crt")
        context.verify_mode = ssl.CERT_REQUIRED

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_certificate_from_cluster_ca_naming_the_ip_is_trusted(
    fresh_bundle: SecretsBundle, tmp_path: Path
) -> None:
    async with _tls_server(_leaf(fresh_bundle.os, ("127.0.0.1",)), tmp_path) as port:
        result = await check_trusted("127.0.0.1", port, fresh_bundle.os.crt, "127.0.0.1", 5)
    assert result.ok, result.reason


async def test_certificate_from_another_ca_is_not_trusted(
    fresh_bundle: SecretsBundle, other_bundle: SecretsBundle, tmp_path: Path
) -> None:
    async with _tls_server(_leaf(other_bundle.os, ("127.0.0.1",)), tmp_path) as port:
        result = await check_trusted("127.0.0.1", port, fresh_bundle.os.crt, "127.0.0.1", 5)
    assert not result.ok
    assert "not signed by the cluster OS CA" in result.reason


async def test_certificate_for_another_ip_is_not_trusted(fresh_bundle: SecretsBundle, tmp_path: Path) -> None:
    async with _tls_server(_leaf(fresh_bundle.os, ("10.77.0.99",)), tmp_path) as port:
        result = await check_trusted("127.0.0.1", port, fresh_bundle.os.crt, "127.0.0.1", 5)
    assert not result.ok
    assert "does not name 127.0.0.1" in result.reason
    assert "10.77.0.99" in result.reason


async def test_expired_certificate_is_not_trusted(fresh_bundle: SecretsBundle, tmp_path: Path) -> None:
    old = _leaf(fresh_bundle.os, ("127.0.0.1",), start=NOW - timedelta(days=3))
    async with _tls_server(old, tmp_path) as port:
        result = await check_trusted("127.0.0.1", port, fresh_bundle.os.crt, "127.0.0.1", 5)
    assert not result.ok
    assert "not valid at" in result.reason


async def test_server_requiring_client_cert_gets_the_admin_one(
    fresh_bundle: SecretsBundle, tmp_path: Path
) -> None:
    admin = admin_certificate(fresh_bundle.os, NOW - timedelta(minutes=1))
    async with _tls_server(
        _leaf(fresh_bundle.os, ("127.0.0.1",)), tmp_path, require_client=fresh_bundle.os
    ) as port:
        result = await check_trusted(
            "127.0.0.1", port, fresh_bundle.os.crt, "127.0.0.1", 5, client_cert=admin
        )
    assert result.ok, result.reason


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_nothing_listening_is_not_trusted(fresh_bundle: SecretsBundle) -> None:
    result = await check_trusted("127.0.0.1", _closed_port(), fresh_bundle.os.crt, "127.0.0.1", 5)
    assert not result.ok
    assert "cannot connect" in result.reason


async def test_plain_tcp_peer_is_not_trusted(fresh_bundle: SecretsBundle) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-nope\r\n" * 10)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await check_trusted("127.0.0.1", port, fresh_bundle.os.crt, "127.0.0.1", 5)
    assert not result.ok
    assert "TLS handshake" in result.reason


async def test_silent_peer_times_out(fresh_bundle: SecretsBundle) -> None:
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        result = await check_trusted("127.0.0.1", port, fresh_bundle.os.crt, "127.0.0.1", 0.3)
        release.set()
    assert not result.ok
    assert "timed out" in result.reason


def test_evaluate_rejects_garbage(fresh_bundle: SecretsBundle) -> None:
    result = evaluate_peer_certificate(b"not der", fresh_bundle.os.crt, "127.0.0.1", NOW)
    assert not result.ok
    assert "does not parse" in result.reason


def test_evaluate_rejects_non_ip_expectation(fresh_bundle: SecretsBundle) -> None:
    leaf = _leaf(fresh_bundle.os, ("127.0.0.1",))
    der = x509.load_pem_x509_certificate(leaf.crt).public_bytes(serialization.Encoding.DER)
    assert evaluate_peer_certificate(der, fresh_bundle.os.crt, "127.0.0.1", NOW).ok
    result = evaluate_peer_certificate(der, fresh_bundle.os.crt, "node-1", NOW)
    assert not result.ok
    assert "not an IP address" in result.reason


async def test_tls13_server_requiring_client_cert_is_still_checked(
    fresh_bundle: SecretsBundle, tmp_path: Path
) -> None:
    # Like apid: the server asks for a client certificate we do not have. In TLS 1.3 the
    # server's certificate arrives before ours is judged, so the check still works.
    async with _tls_server(
        _leaf(fresh_bundle.os, ("127.0.0.1",)), tmp_path, require_client=fresh_bundle.os
    ) as port:
        result = await check_trusted("127.0.0.1", port, fresh_bundle.os.crt, "127.0.0.1", 5)
    assert result.ok, result.reason
