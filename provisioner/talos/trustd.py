"""trustd: Talos's certificate-signing service, ``securityapi.SecurityService/Certificate``.

A joining Talos machine dials trustd (TCP 50001) over TLS, checks the server certificate
against the OS CA certificate in its own config, sends its ``machine.token`` as gRPC
metadata ``token`` and a PEM CSR; trustd answers with the OS CA certificate and a
certificate for the CSR's key: server-auth usage only, Organization removed (so it can
never act as a client with a role), valid 24 hours.  Same policy as Talos's own trustd,
except that NotBefore is backdated by ``NOT_BEFORE_BACKDATE`` for nodes whose clock is
behind ours.

Several clusters can share one server: the resolver maps a token to the cluster whose
machine token it is.  TLS note: a client that dials an IP sends no SNI, so the listener
presents the first server identity; serve one listener per cluster when clients verify
against different OS CAs.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn, Protocol

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from provisioner.talos.pki import CertAndKey, LeafSpec, issue_from_csr, issue_leaf, pkcs8_pem, subject_name
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.wire import CertificateResponse, WireError, decode_request, encode_response

__all__ = [
    "SERVICE",
    "CSRError",
    "SanGuard",
    "SanRefusedError",
    "StaticResolver",
    "TrustdResolver",
    "TrustdServer",
    "foreign_addresses",
    "server_identity",
    "sign_csr",
    "start_trustd",
]

log = logging.getLogger(__name__)

SERVICE = "securityapi.SecurityService"
METHOD = "Certificate"
TRUSTD_PORT = 50001
# Talos: DefaultCertificateValidityDuration for certificates trustd issues.
ISSUED_VALIDITY = timedelta(hours=24)
SERVER_IDENTITY_VALIDITY = timedelta(days=365)
# NotBefore of every certificate trustd issues is this far before the signing time.  A
# node's clock may run behind ours: a machine without NTP yet starts from its RTC, which
# has one-second resolution (Linux truncates it at boot; measured ~0.5 s behind in the
# lab, docs/lifecycle.md), and real fleets drift further.  With NotBefore at the signing
# second, a node that checks the certificate at once (the lab agent's `openssl verify`,
# any TLS client of the node with a slow clock) sees a certificate from the future:
# "certificate is not yet valid".  Talos's own trustd uses time.Now() (siderolabs/crypto
# x509.NewDefaultOptions) but Talos backdates where clocks differ (pkg/kubeconfig: 10 s,
# pkg/kubernetes temporary client: 1 min); Kubernetes's CSR signer backdates 5 min
# (pkg/controller/certificates/signer, PermissiveSigningPolicy.Backdate).  NotAfter stays
# signing time + 24 h, so the certificate's end of life is unchanged.
NOT_BEFORE_BACKDATE = timedelta(minutes=5)


class CSRError(ValueError):
    """The certificate signing request is not a valid, self-signed PEM CSR."""


class SanRefusedError(ValueError):
    """The CSR asks for names the requester may not have (another machine's address)."""


class SanGuard(Protocol):
    """Decides on (and records) the SANs a worker-token holder asks for.

    Talos's trustd signs whatever SANs the CSR carries: every worker shares one token, so
    any holder could get a server certificate for a control-plane node's address
    (issue 14). Returns a refusal reason, or None to sign.
    """

    def __call__(self, peer: str, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]) -> str | None:
        """`peer` is the requester's IP address."""
        ...


def foreign_addresses(ip_addresses: Sequence[str], peer: str, inventory: Sequence[str]) -> list[str]:
    """The IP SANs naming an inventory machine's address other than the requester's own."""
    owned = {str(ipaddress.ip_address(a)) for a in inventory if a}
    return [ip for ip in ip_addresses if ip in owned and ip != peer]


def sign_csr(
    csr_pem: bytes,
    os_ca: CertAndKey,
    now: datetime,
    allow: Callable[[tuple[str, ...], tuple[str, ...]], str | None] | None = None,
) -> bytes:
    """Sign a node's CSR with the OS CA under trustd's policy; returns the PEM certificate.

    `allow(dns_names, ip_addresses)` may refuse the SANs (SanRefusedError with its reason).
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        msg = f"failed to parse CSR: {exc}"
        raise CSRError(msg) from exc
    if not csr.is_signature_valid:
        msg = "CSR signature is invalid"
        raise CSRError(msg)
    # Keep the subject but drop Organization: in Talos, O carries API roles.
    subject = x509.Name([attr for attr in csr.subject if attr.oid != NameOID.ORGANIZATION_NAME])
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    spec = LeafSpec(
        subject=subject,
        validity=ISSUED_VALIDITY,
        server_auth=True,
        dns_names=tuple(sans.get_values_for_type(x509.DNSName)),
        ip_addresses=tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress)),
        backdate=NOT_BEFORE_BACKDATE,
    )
    if allow is not None and (reason := allow(spec.dns_names, spec.ip_addresses)):
        raise SanRefusedError(reason)
    try:
        return issue_from_csr(os_ca, csr, spec, now)
    except TypeError as exc:
        raise CSRError(str(exc)) from exc


def server_identity(os_ca: CertAndKey, names: Sequence[str], now: datetime) -> CertAndKey:
    """A TLS server certificate for trustd signed by the OS CA, naming ``names`` (IPs/hosts)."""
    ips, hosts = [], []
    for name in names:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            hosts.append(name)
    spec = LeafSpec(
        subject=subject_name(common_name="trustd"),
        validity=SERVER_IDENTITY_VALIDITY,
        server_auth=True,
        dns_names=tuple(hosts),
        ip_addresses=tuple(ips),
        backdate=NOT_BEFORE_BACKDATE,  # the node checks it from its own clock too
    )
    return issue_leaf(os_ca, spec, now, kind="ecdsa")


class TrustdResolver(Protocol):
    """Where trustd finds clusters: the TLS identities to present and token -> OS CA."""

    def server_identities(self) -> Sequence[CertAndKey]:
        """TLS server certificates (with keys) to present; the first is the default."""
        ...

    def resolve(self, token: str) -> CertAndKey | Awaitable[CertAndKey | None] | None:
        """The OS CA (cert and key) of the cluster whose machine token is ``token``."""
        ...


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class StaticResolver:
    """A resolver over a fixed set of clusters (tests, and a daemon that reloads it)."""

    clusters: tuple[SecretsBundle, ...]
    identities: tuple[CertAndKey, ...]

    @classmethod
    def from_bundles(
        cls, bundles: Sequence[SecretsBundle], names: Sequence[str], now: datetime
    ) -> StaticResolver:
        """Issue one server identity per cluster naming ``names`` (listen IPs/hostnames)."""
        identities = tuple(server_identity(bundle.os, names, now) for bundle in bundles)
        return cls(tuple(bundles), identities)

    def server_identities(self) -> Sequence[CertAndKey]:
        """The per-cluster TLS server certificates."""
        return self.identities

    def resolve(self, token: str) -> CertAndKey | None:
        """Compare against every cluster's token in constant time (no early exit)."""
        found = None
        offered = _digest(token)
        for bundle in self.clusters:
            if hmac.compare_digest(offered, _digest(bundle.trustd_token)) and found is None:
                found = bundle.os
        return found


@dataclass(frozen=True, slots=True)
class TrustdServer:
    """A running trustd listener."""

    server: grpc.aio.Server
    port: int

    async def stop(self, grace: float | None = None) -> None:
        """Stop serving; in-flight calls get ``grace`` seconds."""
        await self.server.stop(grace)


def _token(context: grpc.aio.ServicerContext[bytes, bytes]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "token":
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""


async def _abort(
    context: grpc.aio.ServicerContext[bytes, bytes], code: grpc.StatusCode, details: str
) -> NoReturn:
    await context.abort(code, details)
    msg = "grpc abort() returned"  # abort() raises; this only satisfies the type checker
    raise AssertionError(msg)


def _peer_ip(peer: str) -> str:
    """`ipv4:10.0.0.1:1234` / `ipv6:[::1]:1234` -> the address."""
    rest = peer.split(":", 1)[-1]
    return rest.rsplit(":", 1)[0].strip("[]")


def _handler(
    resolver: TrustdResolver, clock: Callable[[], datetime], guard: SanGuard | None = None
) -> grpc.GenericRpcHandler:
    async def certificate(
        request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> CertificateResponse:
        token = _token(context)
        resolved = resolver.resolve(token) if token else None
        os_ca = await resolved if inspect.isawaitable(resolved) else resolved
        if os_ca is None:
            log.info("trustd: rejected request from %s: invalid or missing token", context.peer())
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED, "invalid token")
        peer = _peer_ip(context.peer())

        def allow(dns: tuple[str, ...], ips: tuple[str, ...]) -> str | None:
            return None if guard is None else guard(peer, dns, ips)

        try:
            crt = sign_csr(decode_request(request).csr, os_ca, clock(), allow)
        except SanRefusedError as exc:
            log.warning("trustd: refused %s: %s", peer, exc)
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, str(exc))
        except (WireError, CSRError) as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        log.info("trustd: signed a certificate for %s", context.peer())
        return CertificateResponse(ca=os_ca.crt, crt=crt)

    # The request stays raw bytes (no deserializer) so that a malformed message becomes
    # INVALID_ARGUMENT from the handler rather than an opaque INTERNAL from grpc.
    method = grpc.unary_unary_rpc_method_handler(certificate, response_serializer=encode_response)
    return grpc.method_handlers_generic_handler(SERVICE, {METHOD: method})


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def start_trustd(
    listen_host: str,
    port: int,
    resolver: TrustdResolver,
    clock: Callable[[], datetime] = _utc_now,
    guard: SanGuard | None = None,
) -> TrustdServer:
    """Start trustd on ``listen_host:port`` (port 0 picks a free one) over TLS."""
    identities = resolver.server_identities()
    if not identities:
        msg = "trustd needs at least one server identity"
        raise ValueError(msg)
    pairs = [(pkcs8_pem(identity.key), identity.crt) for identity in identities]
    credentials = grpc.ssl_server_credentials(pairs)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handler(resolver, clock, guard),))
    bound = server.add_secure_port(f"{listen_host}:{port}", credentials)
    await server.start()
    log.info("trustd listening on %s:%d", listen_host, bound)
    return TrustdServer(server, bound)
