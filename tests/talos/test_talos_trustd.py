"""trustd over real gRPC/TLS on loopback, with a client that behaves like a Talos worker."""

from __future__ import annotations

import base64
import importlib.util
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.talos.config import ClusterSpec, MachineSpec, generate_documents
from provisioner.talos.pki import CertAndKey, load_cert, new_ca, verify_signed_by
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.trustd import (
    NOT_BEFORE_BACKDATE,
    CSRError,
    StaticResolver,
    TrustdServer,
    server_identity,
    sign_csr,
    start_trustd,
)
from provisioner.talos.wire import (
    CertificateRequest,
    CertificateResponse,
    WireError,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

from .conftest import DATA_DIR, NOW, V113

METHOD = "/securityapi.SecurityService/Certificate"


def _csr(organization: str = "os:admin") -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                         x509.NameAttribute(NameOID.COMMON_NAME, "r1-n7")])  # fmt: skip
    sans = x509.SubjectAlternativeName(
        [x509.DNSName("r1-n7"), x509.IPAddress(__import__("ipaddress").ip_address("10.77.0.17"))]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(sans, critical=False)
        .sign(key, None)
    )
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
async def trustd(fresh_bundle: SecretsBundle, other_bundle: SecretsBundle) -> AsyncIterator[TrustdServer]:
    resolver = StaticResolver.from_bundles([fresh_bundle, other_bundle], ["127.0.0.1", "localhost"], NOW)
    server = await start_trustd("127.0.0.1", 0, resolver, clock=lambda: NOW)
    yield server
    await server.stop(None)


def _worker_view(bundle: SecretsBundle) -> tuple[bytes, str]:
    """What a Talos worker knows: machine.ca.crt and machine.token of its own config."""
    cluster = ClusterSpec("lab", "https://10.77.0.10:6443", "1.34.1", V113, bundle)
    machine = generate_documents(cluster, MachineSpec("worker"))[0]["machine"]
    return base64.b64decode(machine["ca"]["crt"]), machine["token"]


async def _call(port: int, ca: bytes | None, token: str | None, csr: bytes) -> CertificateResponse:
    if ca is None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    else:
        channel = grpc.aio.secure_channel(
            f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=ca)
        )
    async with channel:
        method = channel.unary_unary(
            METHOD, request_serializer=encode_request, response_deserializer=decode_response
        )
        metadata = (("token", token),) if token is not None else None
        response: CertificateResponse = await method(CertificateRequest(csr), metadata=metadata, timeout=10)
        return response


async def test_worker_gets_a_server_certificate(trustd: TrustdServer, fresh_bundle: SecretsBundle) -> None:
    ca, token = _worker_view(fresh_bundle)
    response = await _call(trustd.port, ca, token, _csr())
    assert response.ca == fresh_bundle.os.crt
    cert = x509.load_pem_x509_certificate(response.crt)
    assert verify_signed_by(cert, load_cert(fresh_bundle.os.crt))
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "r1-n7"
    # NotBefore backdated for nodes whose clock is behind; the end of life is Talos's 24 h
    assert cert.not_valid_before_utc == NOW - NOT_BEFORE_BACKDATE
    assert cert.not_valid_after_utc == NOW + timedelta(hours=24)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.77.0.17"]
    assert not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


async def test_token_selects_the_cluster(
    trustd: TrustdServer, fresh_bundle: SecretsBundle, other_bundle: SecretsBundle
) -> None:
    ca, _ = _worker_view(fresh_bundle)  # the listener presents the first cluster's identity
    response = await _call(trustd.port, ca, other_bundle.trustd_token, _csr())
    assert response.ca == other_bundle.os.crt
    assert verify_signed_by(x509.load_pem_x509_certificate(response.crt), load_cert(other_bundle.os.crt))


@pytest.mark.parametrize("token", ["d8cwfa.eyvpi0xwxyarbfid", "", None])
async def test_wrong_or_missing_token_is_unauthenticated(
    trustd: TrustdServer, fresh_bundle: SecretsBundle, token: str | None
) -> None:
    ca, _ = _worker_view(fresh_bundle)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(trustd.port, ca, token, _csr())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_garbage_csr_is_invalid_argument(trustd: TrustdServer, fresh_bundle: SecretsBundle) -> None:
    ca, token = _worker_view(fresh_bundle)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(
            trustd.port,
            ca,
            token,
            b"-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n",
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CSR" in (info.value.details() or "")


async def test_malformed_message_is_invalid_argument(
    trustd: TrustdServer, fresh_bundle: SecretsBundle
) -> None:
    ca, token = _worker_view(fresh_bundle)
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{trustd.port}", grpc.ssl_channel_credentials(ca)
    ) as channel:
        method = channel.unary_unary(METHOD)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await method(b"\x0a\xff\xff\xff", metadata=(("token", token),), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_plain_tcp_without_tls_fails(trustd: TrustdServer, fresh_bundle: SecretsBundle) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(trustd.port, None, fresh_bundle.trustd_token, _csr())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_trusting_another_ca_rejects_trustd(
    trustd: TrustdServer, other_bundle: SecretsBundle
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _call(trustd.port, other_bundle.os.crt, other_bundle.trustd_token, _csr())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_sign_csr_policy_with_ecdsa_csr(fresh_bundle: SecretsBundle) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "os:admin")]))
           .sign(key, hashes.SHA256()))  # fmt: skip
    cert = x509.load_pem_x509_certificate(
        sign_csr(csr.public_bytes(serialization.Encoding.PEM), fresh_bundle.os, NOW)
    )
    assert cert.subject == x509.Name([])
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


def test_sign_csr_rejects_garbage(fresh_bundle: SecretsBundle) -> None:
    with pytest.raises(CSRError, match="failed to parse CSR"):
        sign_csr(b"garbage", fresh_bundle.os, NOW)


@pytest.mark.parametrize(
    "message",
    [
        CertificateResponse(b"", b""),
        CertificateResponse(b"ca", b""),
        CertificateResponse(b"x" * 300, b"y" * 70000),
    ],
)
def test_response_codec_round_trip(message: CertificateResponse) -> None:
    assert decode_response(encode_response(message)) == message


def test_request_codec_skips_unknown_fields_and_rejects_truncation() -> None:
    assert (
        decode_request(
            b"\x08\x96\x01" + encode_request(CertificateRequest(b"abc")) + b"\x1d\x00\x00\x00\x00"
        ).csr
        == b"abc"
    )
    with pytest.raises(WireError):
        decode_request(b"\x0a\x05ab")
    with pytest.raises(WireError):
        decode_request(b"\x0b")


def _generated_pb2(tmp_path: Path) -> ModuleType:
    proto = DATA_DIR / "security.proto"
    if not proto.exists():
        pytest.skip("security.proto not available")
    protoc = pytest.importorskip("grpc_tools.protoc")
    (tmp_path / "security.proto").write_bytes(proto.read_bytes())
    assert (
        protoc.main(["protoc", f"-I{tmp_path}", f"--python_out={tmp_path}", str(tmp_path / "security.proto")])
        == 0
    )
    spec = importlib.util.spec_from_file_location("security_pb2", tmp_path / "security_pb2.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["security_pb2"] = module
    spec.loader.exec_module(module)
    return module


def test_codec_agrees_with_protobuf_runtime(tmp_path: Path) -> None:
    pb2 = _generated_pb2(tmp_path)
    csr = _csr()
    assert encode_request(CertificateRequest(csr)) == pb2.CertificateRequest(csr=csr).SerializeToString()
    reference = pb2.CertificateResponse(ca=b"ca-pem" * 40, crt=b"crt-pem" * 300).SerializeToString()
    assert decode_response(reference) == CertificateResponse(b"ca-pem" * 40, b"crt-pem" * 300)
    parsed = pb2.CertificateResponse()
    parsed.ParseFromString(encode_response(CertificateResponse(b"a", b"b")))
    assert (parsed.ca, parsed.crt) == (b"a", b"b")


@pytest.mark.skipif(__import__("shutil").which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_accepts_signed_certificate_for_servers_only(
    fresh_bundle: SecretsBundle, tmp_path: Path
) -> None:
    import subprocess

    (tmp_path / "ca.crt").write_bytes(fresh_bundle.os.crt)
    (tmp_path / "node.crt").write_bytes(sign_csr(_csr(), fresh_bundle.os, NOW))
    base = [
        "openssl",
        "verify",
        "-attime",
        str(int(NOW.timestamp()) + 60),
        "-CAfile",
        str(tmp_path / "ca.crt"),
    ]
    server = subprocess.run(
        [*base, "-purpose", "sslserver", str(tmp_path / "node.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert server.returncode == 0, server.stderr
    client = subprocess.run(
        [*base, "-purpose", "sslclient", str(tmp_path / "node.crt")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert client.returncode != 0, "a trustd certificate must not be usable as a client certificate"


def _openssl_verify_at(ca_pem: bytes, cert_pem: bytes, at: int, tmp_path: Path) -> str:
    """``openssl verify`` as the lab agent runs it, at a node clock of ``at`` (whole seconds)."""
    import subprocess

    (tmp_path / "ca.crt").write_bytes(ca_pem)
    (tmp_path / "node.crt").write_bytes(cert_pem)
    argv = ["openssl", "verify", "-attime", str(at), "-CAfile", str(tmp_path / "ca.crt")]
    result = subprocess.run([*argv, str(tmp_path / "node.crt")], capture_output=True, text=True, check=False)
    return "ok" if result.returncode == 0 else result.stdout + result.stderr


# A lab VM's clock starts from the RTC, truncated to the second, and measured ~0.5 s behind
# the host; a real node without NTP may be minutes off.  The node checks the certificate
# the moment it arrives.
@pytest.mark.skipif(__import__("shutil").which("openssl") is None, reason="openssl CLI not installed")
@pytest.mark.parametrize("behind_s", [1, 2, 60, 299])
def test_node_with_a_clock_behind_accepts_its_certificate(tmp_path: Path, behind_s: int) -> None:
    os_ca = new_ca("ed25519", "talos", NOW - timedelta(days=1))  # made well before the boot
    signed_at = NOW + timedelta(milliseconds=700)  # trustd signs in the middle of a second
    node_clock = int((signed_at - timedelta(seconds=behind_s)).timestamp())
    issued = sign_csr(_csr(), os_ca, signed_at)
    assert _openssl_verify_at(os_ca.crt, issued, node_clock, tmp_path) == "ok"
    identity = server_identity(os_ca, ["10.77.0.1"], signed_at)
    assert _openssl_verify_at(os_ca.crt, identity.crt, node_clock, tmp_path) == "ok"


@pytest.mark.skipif(__import__("shutil").which("openssl") is None, reason="openssl CLI not installed")
def test_backdating_is_bounded(tmp_path: Path) -> None:
    """A node more than the margin behind still sees a certificate from the future."""
    os_ca = new_ca("ed25519", "talos", NOW - timedelta(days=1))
    issued = sign_csr(_csr(), os_ca, NOW)
    too_early = int((NOW - NOT_BEFORE_BACKDATE).timestamp()) - 1
    verdict = _openssl_verify_at(os_ca.crt, issued, too_early, tmp_path)
    assert "error 9 at 0 depth" in verdict, verdict  # the leaf, not the CA, is "not yet valid"


class AsyncResolver:
    """A resolver whose lookup is a coroutine, as a database-backed one would be."""

    def __init__(self, inner: StaticResolver) -> None:
        self.inner = inner
        self.lookups = 0

    def server_identities(self) -> tuple[CertAndKey, ...]:
        return self.inner.identities

    async def resolve(self, token: str) -> CertAndKey | None:
        self.lookups += 1
        return self.inner.resolve(token)


async def test_async_resolver_is_awaited(fresh_bundle: SecretsBundle) -> None:
    resolver = AsyncResolver(StaticResolver.from_bundles([fresh_bundle], ["127.0.0.1"], NOW))
    server = await start_trustd("127.0.0.1", 0, resolver, clock=lambda: NOW)
    try:
        ca, token = _worker_view(fresh_bundle)
        response = await _call(server.port, ca, token, _csr())
    finally:
        await server.stop(None)
    assert response.ca == fresh_bundle.os.crt
    assert resolver.lookups == 1


async def test_trustd_needs_an_identity() -> None:
    with pytest.raises(ValueError, match="at least one server identity"):
        await start_trustd("127.0.0.1", 0, StaticResolver((), ()))
