"""Checks on a machine config that Talos's JSON schema does not express.

Talos enforces these in Go (``v1alpha1_validation.go`` and friends) or relies on them at
boot: a worker must never carry CA private keys (a worker config is served to a machine
we do not fully trust yet), a control-plane node needs the OS CA key, tokens have a fixed
format, every PEM must decode and each certificate must match its key, and cluster
secrets have fixed lengths.  Each check returns ``path: message`` strings.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from provisioner.talos.pki import cert_matches_key, load_private_key
from provisioner.talos.secrets import CLUSTER_ID_BYTES, CLUSTER_SECRET_BYTES, TOKEN_PATTERN

__all__ = ["check_rules"]


def _get(doc: Any, *path: str) -> Any:  # noqa: ANN401 - YAML values are untyped
    for part in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(part)
    return doc


def _decode_b64_pem(value: object, path: str, errors: list[str]) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        errors.append(f"{path}: not valid base64")
        return None


def _load_cert(pem: bytes, path: str, errors: list[str]) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        errors.append(f"{path}: not a PEM certificate")
        return None


def _check_pair(crt: bytes | None, key: bytes | None, path: str, errors: list[str]) -> None:
    """Every PEM must load; when both halves are present they must belong together."""
    cert = _load_cert(crt, f"{path}.crt", errors) if crt else None
    private = None
    if key:
        try:
            private = load_private_key(key)
        except (ValueError, TypeError):
            errors.append(f"{path}.key: not a PEM private key")
    if cert is not None and private is not None and not cert_matches_key(cert, private):
        errors.append(f"{path}: certificate does not match its private key")


def _b64_pairs(main: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(path, {crt, key}) of every base64 certificate/key pair of the v1alpha1 document."""
    for path in (
        "machine.ca",
        "cluster.ca",
        "cluster.aggregatorCA",
        "cluster.etcd.ca",
        "cluster.serviceAccount",
    ):
        value = _get(main, *path.split("."))
        if isinstance(value, Mapping):
            yield path, value
    for section in ("machine", "cluster"):
        accepted = _get(main, section, "acceptedCAs")
        if isinstance(accepted, list):
            for index, item in enumerate(accepted):
                yield f"{section}.acceptedCAs[{index}]", item


def _check_v1alpha1_pems(main: Mapping[str, Any], errors: list[str]) -> None:
    for path, pair in _b64_pairs(main):
        if not isinstance(pair, Mapping):
            continue
        crt = _decode_b64_pem(pair.get("crt"), f"{path}.crt", errors)
        key = _decode_b64_pem(pair.get("key"), f"{path}.key", errors)
        _check_pair(crt, key, path, errors)


def _check_multidoc_pems(label: str, doc: Mapping[str, Any], errors: list[str]) -> None:
    for field in ("issuingCA",):
        pair = doc.get(field)
        if isinstance(pair, Mapping):
            crt, key = pair.get("cert"), pair.get("key")
            _check_pair(
                crt.encode() if isinstance(crt, str) and crt else None,
                key.encode() if isinstance(key, str) and key else None,
                f"{label}.{field}",
                errors,
            )
    for index, pem in enumerate(doc.get("acceptedCAs") or []):
        if isinstance(pem, str):
            _check_pair(pem.encode(), None, f"{label}.acceptedCAs[{index}]", errors)
    private = _get(doc, "issuer", "privateKey")
    if isinstance(private, str) and private:
        _check_pair(None, private.encode(), f"{label}.issuer", errors)


def _check_token(value: object, path: str, errors: list[str]) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not TOKEN_PATTERN.match(value):
        errors.append(f"{path}: must match [0-9a-z]{{6}}.[0-9a-z]{{16}} (got {value!r})")


def _check_endpoint(value: object, path: str, errors: list[str]) -> None:
    if value is None:
        return
    try:
        parts = urlsplit(str(value))
        port = parts.port
    except ValueError:
        port = -1
        parts = urlsplit("")
    if parts.scheme != "https" or not parts.hostname or port == -1:
        errors.append(f"{path}: must be an https:// URL with a host (got {value!r})")


def _check_b64_len(
    value: object, path: str, size: int, errors: list[str], *, urlsafe_ok: bool = False
) -> None:
    if value is None:
        return
    decoders = [base64.b64decode] + ([base64.urlsafe_b64decode] if urlsafe_ok else [])
    for decode in decoders:
        try:
            raw = decode(str(value).encode())
        except (binascii.Error, ValueError):
            continue
        if len(raw) == size:
            return
    errors.append(f"{path}: must be base64 of {size} bytes")


def _by_kind(docs: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(doc["kind"]): doc for doc in docs if "kind" in doc}


def _check_multidoc_worker_keys(
    main: Mapping[str, Any], kinds: Mapping[str, Mapping[str, Any]], errors: list[str]
) -> None:
    """A worker never gets the Kubernetes CA key (Talos checks only the v1alpha1 field)."""
    if _get(main, "machine", "type") in ("worker", "join", "") and _get(
        kinds.get("KubeAPIServerCAConfig"), "issuingCA", "key"
    ):
        errors.append("KubeAPIServerCAConfig.issuingCA.key: a worker config must not carry a CA private key")


def _check_install_disk(
    main: Mapping[str, Any], kinds: Mapping[str, Mapping[str, Any]], errors: list[str]
) -> None:
    """Provisioner rule: on metal the machine installs, so the config must say where.

    Talos checks a present ``machine.install`` and a present UnattendedInstallConfig
    (talosrules); with neither, Talos (1.14+) boots without installing, which is never
    what a provisioned machine is for.
    """
    if isinstance(_get(main, "machine", "install"), Mapping) or "UnattendedInstallConfig" in kinds:
        return
    errors.append("UnattendedInstallConfig: an install disk is required on metal (provisioner rule)")


def check_rules(docs: list[Mapping[str, Any]], *, require_install_disk: bool) -> list[str]:
    """Run every non-schema rule over the config's documents."""
    errors: list[str] = []
    main = next((doc for doc in docs if "kind" not in doc), {})
    kinds = _by_kind(docs)
    _check_multidoc_worker_keys(main, kinds, errors)
    _check_token(_get(main, "machine", "token"), "machine.token", errors)
    _check_token(_get(main, "cluster", "token"), "cluster.token", errors)
    _check_endpoint(
        _get(main, "cluster", "controlPlane", "endpoint"), "cluster.controlPlane.endpoint", errors
    )
    _check_endpoint(_get(kinds.get("KubeClusterConfig"), "endpoint"), "KubeClusterConfig.endpoint", errors)
    identity = kinds.get("DiscoveryIdentityConfig", {})
    # Before 1.14 talosctl wrote the cluster id URL-safe; both alphabets are accepted.
    _check_b64_len(_get(main, "cluster", "id"), "cluster.id", CLUSTER_ID_BYTES, errors, urlsafe_ok=True)
    _check_b64_len(
        identity.get("clusterID"),
        "DiscoveryIdentityConfig.clusterID",
        CLUSTER_ID_BYTES,
        errors,
        urlsafe_ok=True,
    )
    _check_b64_len(_get(main, "cluster", "secret"), "cluster.secret", CLUSTER_SECRET_BYTES, errors)
    _check_b64_len(
        identity.get("clusterSecret"), "DiscoveryIdentityConfig.clusterSecret", CLUSTER_SECRET_BYTES, errors
    )
    _check_b64_len(
        _get(main, "cluster", "secretboxEncryptionSecret"), "cluster.secretboxEncryptionSecret", 32, errors
    )
    _check_v1alpha1_pems(main, errors)
    for doc in docs:
        if "kind" in doc:
            _check_multidoc_pems(str(doc["kind"]), doc, errors)
    if require_install_disk:
        _check_install_disk(main, kinds, errors)
    return errors
