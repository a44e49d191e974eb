"""Admin talosconfig: shape, and an os:admin client certificate from the OS CA."""

from __future__ import annotations

import base64
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.talos.pki import cert_matches_key, load_cert, load_private_key, verify_signed_by
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.talosconfig import generate_talosconfig

from .conftest import NOW


def test_talosconfig_shape_and_certificate(fresh_bundle: SecretsBundle) -> None:
    text = generate_talosconfig("lab", ["10.77.0.11", "10.77.0.12"], fresh_bundle.os, NOW)
    config = yaml.safe_load(text)
    assert config["context"] == "lab"
    assert list(config["contexts"]) == ["lab"]
    context = config["contexts"]["lab"]
    assert list(context) == ["endpoints", "ca", "crt", "key"]
    assert context["endpoints"] == ["10.77.0.11", "10.77.0.12"]
    assert base64.b64decode(context["ca"]) == fresh_bundle.os.crt
    cert = x509.load_pem_x509_certificate(base64.b64decode(context["crt"]))
    key = load_private_key(base64.b64decode(context["key"]))
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert cert_matches_key(cert, key)
    assert verify_signed_by(cert, load_cert(fresh_bundle.os.crt))
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["os:admin"]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=365)
    assert cert.not_valid_before_utc == NOW


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_openssl_verifies_admin_certificate(fresh_bundle: SecretsBundle, tmp_path: Path) -> None:
    context = yaml.safe_load(generate_talosconfig("lab", [], fresh_bundle.os, NOW))["contexts"]["lab"]
    (tmp_path / "ca.crt").write_bytes(fresh_bundle.os.crt)
    (tmp_path / "admin.crt").write_bytes(base64.b64decode(context["crt"]))
    result = subprocess.run(
        ["openssl", "verify", "-attime", str(int(NOW.timestamp()) + 60), "-purpose", "sslclient",
         "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "admin.crt")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")
