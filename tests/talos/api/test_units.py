"""Pure parts of the Talos API client: error mapping, kubeconfig archive, credentials."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.talos.api.client import target
from provisioner.talos.api.credentials import CLIENT_CERT_BACKDATE, AdminCredentials
from provisioner.talos.api.decode import KubeconfigError, extract_kubeconfig, join_chunks
from provisioner.talos.api.errors import (
    TalosAlreadyBootstrappedError,
    TalosApiError,
    TalosNotReadyError,
    TalosPermissionError,
    TalosTimeoutError,
    TalosUnavailableError,
    map_status,
)
from provisioner.talos.pki import load_cert, new_ca, verify_signed_by
from tests.talos.api.fake_apid import KUBECONFIG, kubeconfig_archive

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("method", "code", "cls", "words"),
    [
        ("Version", "UNAVAILABLE", TalosUnavailableError, "unreachable"),
        ("Version", "DEADLINE_EXCEEDED", TalosTimeoutError, "deadline"),
        ("Reset", "PERMISSION_DENIED", TalosPermissionError, "O=os:admin"),
        ("Version", "UNAUTHENTICATED", TalosPermissionError, "client certificate"),
        ("Bootstrap", "ALREADY_EXISTS", TalosAlreadyBootstrappedError, "already bootstrapped"),
        ("Bootstrap", "FAILED_PRECONDITION", TalosNotReadyError, "not ready"),
        ("Version", "UNIMPLEMENTED", TalosApiError, "does not implement"),
        ("Version", "INTERNAL", TalosApiError, "the call failed"),
    ],
)
def test_map_status(method: str, code: str, cls: type[TalosApiError], words: str) -> None:
    error = map_status(method, "10.0.0.2:50000", code, "detail text")
    assert type(error) is cls
    assert str(error).startswith(f"Talos {method} on 10.0.0.2:50000: ")
    assert words in str(error)
    assert str(error).endswith(f"({code}: detail text)")


def test_already_exists_outside_bootstrap_is_not_bootstrapped() -> None:
    error = map_status("Reset", "n:50000", "ALREADY_EXISTS", "")
    assert not isinstance(error, TalosAlreadyBootstrappedError)
    assert str(error).endswith("(ALREADY_EXISTS)")


def test_target_brackets_ipv6() -> None:
    assert target("10.0.0.2") == "10.0.0.2:50000"
    assert target("fd00::2", 50001) == "[fd00::2]:50001"
    assert target("node-1.lab") == "node-1.lab:50000"


def test_extract_kubeconfig_with_dot_slash_name() -> None:
    assert extract_kubeconfig(kubeconfig_archive(name="./kubeconfig")) == KUBECONFIG


def test_extract_kubeconfig_refuses_garbage() -> None:
    with pytest.raises(KubeconfigError, match="not gzip"):
        extract_kubeconfig(b"not an archive")
    with pytest.raises(KubeconfigError, match="not a tar"):
        extract_kubeconfig(gzip.compress(b"x" * 700))


def test_extract_kubeconfig_bounds_inflation() -> None:
    bomb = gzip.compress(b"\0" * 4096)
    with pytest.raises(KubeconfigError, match="inflates to more than 1024"):
        extract_kubeconfig(bomb, limit=1024)


def test_join_chunks_bounds_the_stream() -> None:
    assert join_chunks([b"ab", b"", b"c"]) == b"abc"
    with pytest.raises(KubeconfigError, match="larger than 4 bytes"):
        join_chunks([b"abc", b"de"], limit=4)


def test_admin_credentials_short_lived_admin_cert() -> None:
    ca = new_ca("ed25519", "talos", NOW - timedelta(days=1))
    creds = AdminCredentials.issue(ca, NOW)
    cert = load_cert(creds.client.crt)
    assert verify_signed_by(cert, load_cert(ca.crt))
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["os:admin"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc == NOW + timedelta(hours=1)
    assert cert.not_valid_before_utc == NOW - CLIENT_CERT_BACKDATE
    assert creds.ca_crt == ca.crt


def test_admin_credentials_renewal() -> None:
    ca = new_ca("ed25519", "talos", NOW - timedelta(days=1))
    creds = AdminCredentials.issue(ca, NOW)
    assert not creds.needs_renewal(NOW + timedelta(minutes=44))
    assert creds.renewed(ca, NOW + timedelta(minutes=44)) is creds
    assert creds.needs_renewal(NOW + timedelta(minutes=45))
    fresh = creds.renewed(ca, NOW + timedelta(minutes=50))
    assert fresh.not_after == NOW + timedelta(minutes=110)
    assert fresh.client != creds.client
