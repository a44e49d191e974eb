"""Generated secrets: Talos's algorithms and formats, checked with cryptography and openssl."""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.talos.pki import cert_matches_key, load_cert, load_private_key, verify_signed_by
from provisioner.talos.secrets import (
    TOKEN_PATTERN,
    SecretsBundle,
    SecretsFormatError,
    dump_bundle,
    generate_bundle,
    generate_token,
    load_bundle,
)

from .conftest import NOW, V113

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")


def _orgs(cert: x509.Certificate) -> list[str]:
    return [str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def test_ca_algorithms_and_subjects(fresh_bundle: SecretsBundle) -> None:
    expected = {
        "etcd": (ec.EllipticCurvePrivateKey, ["etcd"]),
        "k8s": (ec.EllipticCurvePrivateKey, ["kubernetes"]),
        "k8s_aggregator": (ec.EllipticCurvePrivateKey, []),
        "os": (ed25519.Ed25519PrivateKey, ["talos"]),
    }
    for field, (key_type, orgs) in expected.items():
        pair = getattr(fresh_bundle, field)
        cert, key = load_cert(pair.crt), load_private_key(pair.key)
        assert isinstance(key, key_type), field
        if isinstance(key, ec.EllipticCurvePrivateKey):
            assert key.curve.name == "secp256r1"
        assert _orgs(cert) == orgs, field
        assert cert_matches_key(cert, key)
        assert verify_signed_by(cert, cert), "CAs are self-signed"
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.not_valid_before_utc == NOW
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(hours=87600)
        assert 0 < cert.serial_number < 2**128
    assert load_cert(fresh_bundle.k8s_aggregator.crt).subject == x509.Name([])


def test_ca_extensions_match_talos(fresh_bundle: SecretsBundle) -> None:
    cert = load_cert(fresh_bundle.os.crt)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert usage.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert len(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest) == 20


def test_serials_are_random(fresh_bundle: SecretsBundle) -> None:
    serials = {
        load_cert(getattr(fresh_bundle, f).crt).serial_number for f in ("etcd", "k8s", "k8s_aggregator", "os")
    }
    assert len(serials) == 4


def test_pem_labels(fresh_bundle: SecretsBundle) -> None:
    assert fresh_bundle.os.key.startswith(b"-----BEGIN ED25519 PRIVATE KEY-----\n")
    assert fresh_bundle.etcd.key.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    assert fresh_bundle.k8s_service_account_key.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    key = load_private_key(fresh_bundle.k8s_service_account_key)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 4096


def test_tokens_and_random_secrets(fresh_bundle: SecretsBundle) -> None:
    assert TOKEN_PATTERN.match(fresh_bundle.trustd_token)
    assert TOKEN_PATTERN.match(fresh_bundle.bootstrap_token)
    assert fresh_bundle.trustd_token != fresh_bundle.bootstrap_token
    for value in (
        fresh_bundle.cluster_id,
        fresh_bundle.cluster_secret,
        fresh_bundle.secretbox_encryption_secret,
    ):
        assert len(base64.b64decode(value, validate=True)) == 32
    assert len({generate_token() for _ in range(50)}) == 50


def test_pre_114_contract_uses_urlsafe_cluster_id() -> None:
    # Only the cluster id depends on the contract; RSA generation makes this slow-ish.
    bundle = generate_bundle(NOW, V113)
    assert len(base64.urlsafe_b64decode(bundle.cluster_id)) == 32


def test_generated_bundle_round_trips(fresh_bundle: SecretsBundle) -> None:
    text = dump_bundle(fresh_bundle)
    assert load_bundle(text) == fresh_bundle
    assert text.startswith("cluster:\n    id: ")
    assert "aescbcencryptionsecret" not in text


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda t: t.replace("    token: ", "    tokn: "), "trustdinfo.token: missing"),
        (
            lambda t: t.replace("        crt: LS0t", "        crt: LS0t%%", 1),
            "certs.etcd.crt: not valid base64",
        ),
        (lambda _t: "- a list\n", "must be a YAML mapping"),
        (lambda _t: "a: [\n", "not valid YAML"),
    ],
)
def test_bad_bundle_files_are_rejected(fresh_bundle: SecretsBundle, mutation: object, message: str) -> None:
    text = mutation(dump_bundle(fresh_bundle))  # type: ignore[operator]
    with pytest.raises(SecretsFormatError, match=message):
        load_bundle(text)


def _openssl(*args: str) -> str:
    assert OPENSSL is not None
    result = subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_openssl
def test_openssl_reads_and_verifies_every_ca(fresh_bundle: SecretsBundle, tmp_path: Path) -> None:
    for field in ("etcd", "k8s", "k8s_aggregator", "os"):
        pair = getattr(fresh_bundle, field)
        crt, key = tmp_path / f"{field}.crt", tmp_path / f"{field}.key"
        crt.write_bytes(pair.crt)
        # openssl, like cryptography, wants the standard PKCS#8 label for Ed25519 keys.
        key.write_bytes(pair.key.replace(b"ED25519 PRIVATE KEY", b"PRIVATE KEY"))
        text = _openssl("x509", "-noout", "-text", "-in", str(crt))
        assert "CA:TRUE" in text
        assert ("ED25519" in text) == (field == "os")
        assert _openssl("verify", "-CAfile", str(crt), str(crt)).strip().endswith("OK")
        cert_pub = _openssl("x509", "-noout", "-pubkey", "-in", str(crt))
        key_pub = _openssl("pkey", "-pubout", "-in", str(key))
        assert cert_pub == key_pub
    sa = tmp_path / "sa.key"
    sa.write_bytes(fresh_bundle.k8s_service_account_key)
    assert "4096 bit" in _openssl("pkey", "-noout", "-text", "-in", str(sa))
