"""X.509 helpers shared by the secrets bundle, talosconfig, trustd, validation and trust check.

Certificates are built the way Talos (siderolabs/crypto) builds them, so that a Talos
node cannot tell ours from ``talosctl``'s: CA certificates carry critical
``keyUsage = digitalSignature, keyCertSign``, ``extendedKeyUsage = serverAuth, clientAuth``,
critical ``basicConstraints CA:TRUE`` and a random 20-byte subject key identifier, and
have a random 128-bit serial number.  Time is always passed in as ``now``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY",
    "CertAndKey",
    "LeafSpec",
    "PrivateKey",
    "cert_matches_key",
    "generate_key",
    "issue_from_csr",
    "issue_leaf",
    "load_cert",
    "load_private_key",
    "new_ca",
    "pkcs8_pem",
    "private_key_pem",
    "subject_name",
    "verify_signed_by",
]

# Talos: CAValidityTime = 87600h (ten years of 365 days).
CA_VALIDITY = timedelta(hours=87600)
# Talos labels PKCS#8 Ed25519 keys with a label of its own; cryptography wants "PRIVATE KEY".
ED25519_PEM_LABEL = "ED25519 PRIVATE KEY"

PrivateKey: TypeAlias = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KeyKind: TypeAlias = Literal["ed25519", "ecdsa", "rsa4096"]


@dataclass(frozen=True, slots=True)
class CertAndKey:
    """A PEM certificate and its PEM private key (``key`` empty when only the cert is known)."""

    crt: bytes
    key: bytes


def generate_key(kind: KeyKind) -> PrivateKey:
    """Generate a private key of the given kind (P-256 for ECDSA, 4096 bits for RSA)."""
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=4096)


def private_key_pem(key: PrivateKey) -> bytes:
    """Encode a key as Talos does: SEC1 ``EC``, PKCS#1 ``RSA``, PKCS#8 ``ED25519 PRIVATE KEY``."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem.replace(b"PRIVATE KEY-----", ED25519_PEM_LABEL.encode() + b"-----")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> PrivateKey:
    """Load a PEM private key, accepting Talos's ``ED25519 PRIVATE KEY`` label."""
    normalized = pem.replace(ED25519_PEM_LABEL.encode(), b"PRIVATE KEY")
    # The RSA consistency check costs ~0.2 s per 4096-bit key; we only sign with keys we
    # generated or compare public halves, so it buys nothing here.
    key = serialization.load_pem_private_key(normalized, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        msg = f"unsupported private key type {type(key).__name__}"
        raise TypeError(msg)
    return key


def load_cert(pem: bytes) -> x509.Certificate:
    """Load one PEM certificate (the first one when several are concatenated)."""
    return x509.load_pem_x509_certificate(pem)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA512 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA512()
    return hashes.SHA256()


def _serial() -> int:
    # Go draws uniformly below 2**128; a certificate serial must be positive.
    return secrets.randbelow(2**128 - 1) + 1


_PRINTABLE = re.compile(r"^[A-Za-z0-9 '()+,\-./:=?]*$")


def _attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    # Go encodes a name as PrintableString when it can, UTF8String otherwise; cryptography
    # defaults to UTF8String.  Matching Go keeps our certificates identical in shape.
    kind = _ASN1Type.PrintableString if _PRINTABLE.match(value) else _ASN1Type.UTF8String
    return x509.NameAttribute(oid, value, _type=kind)


def subject_name(organizations: tuple[str, ...] = (), common_name: str = "") -> x509.Name:
    """An X.509 name with the given organizations and optional common name, Go-encoded."""
    attributes = [_attribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    if common_name:
        attributes.append(_attribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def new_ca(kind: KeyKind, organization: str | None, now: datetime) -> CertAndKey:
    """Create a self-signed 10-year CA; ``organization=None`` gives an empty subject."""
    key = generate_key(kind)
    subject = subject_name((organization,) if organization else ())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # Go fills the subject key id with 20 random bytes rather than a key hash.
        .add_extension(x509.SubjectKeyIdentifier(os.urandom(20)), critical=False)
    )
    cert = builder.sign(key, _hash_for(key))
    return CertAndKey(cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key))


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True, slots=True)
class LeafSpec:
    """What goes into a leaf certificate signed by a CA.

    ``backdate`` moves NotBefore that far before ``now`` (NotAfter stays ``now +
    validity``), so that a peer whose clock runs behind the issuer's does not see a
    certificate from the future.
    """

    subject: x509.Name
    validity: timedelta
    server_auth: bool = False
    client_auth: bool = False
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    backdate: timedelta = timedelta(0)


def _sign_leaf(
    ca: CertAndKey,
    public_key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    spec: LeafSpec,
    now: datetime,
) -> bytes:
    ca_cert = load_cert(ca.crt)
    ca_key = load_private_key(ca.key)
    usages = []
    if spec.server_auth:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if spec.client_auth:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(now - spec.backdate)
        .not_valid_after(now + spec.validity)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(ski.digest, None, None),
            critical=False,
        )
    except x509.ExtensionNotFound:
        pass
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in spec.dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, _hash_for(ca_key))
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_leaf(ca: CertAndKey, spec: LeafSpec, now: datetime, kind: KeyKind = "ed25519") -> CertAndKey:
    """Generate a key and a certificate for it signed by ``ca``."""
    key = generate_key(kind)
    public_key = key.public_key()
    return CertAndKey(_sign_leaf(ca, public_key, spec, now), private_key_pem(key))


def issue_from_csr(
    ca: CertAndKey, csr: x509.CertificateSigningRequest, spec: LeafSpec, now: datetime
) -> bytes:
    """Sign a CSR's public key with ``ca``; the caller decides subject and SANs in ``spec``."""
    public_key = csr.public_key()
    if not isinstance(public_key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        msg = f"unsupported CSR key type {type(public_key).__name__}"
        raise TypeError(msg)
    return _sign_leaf(ca, public_key, spec, now)


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``cert`` names ``issuer`` as issuer and carries a valid signature by its key."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def cert_matches_key(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether the certificate's public key is the public half of ``key``."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    cert_public = cert.public_key().public_bytes(serialization.Encoding.DER, fmt)
    key_public = key.public_key().public_bytes(serialization.Encoding.DER, fmt)
    return cert_public == key_public


def pkcs8_pem(key_pem: bytes) -> bytes:
    """A private key as unencrypted PKCS#8 PEM.

    gRPC's TLS stack reads PKCS#8 and SEC1, not the "ED25519 PRIVATE KEY" label Talos
    (and :func:`private_key_pem`) writes for Ed25519 keys.
    """
    key = serialization.load_pem_private_key(key_pem.replace(b"ED25519 PRIVATE KEY", b"PRIVATE KEY"), None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
