"""The cluster secrets bundle: generation with Talos's algorithms, and the YAML format.

The on-disk format is what ``talosctl gen secrets`` writes: four top-level sections
(``cluster``, ``secrets``, ``trustdinfo``, ``certs``) with certificates and keys stored as
base64 of their PEM text.  :func:`dump_bundle` re-emits a loaded bundle byte for byte.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from provisioner.talos import goyaml
from provisioner.talos.contract import VersionContract
from provisioner.talos.pki import CertAndKey, generate_key, new_ca, private_key_pem

__all__ = [
    "SecretsBundle",
    "SecretsFormatError",
    "dump_bundle",
    "generate_bundle",
    "generate_token",
    "load_bundle",
]

TOKEN_PATTERN = re.compile(r"^[0-9a-z]{6}\.[0-9a-z]{16}$")
_TOKEN_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"  # noqa: S105 - an alphabet, not a secret
CLUSTER_ID_BYTES = 32
CLUSTER_SECRET_BYTES = 32
ENCRYPTION_SECRET_BYTES = 32


class SecretsFormatError(ValueError):
    """A secrets bundle file is missing a field or holds a malformed value."""


@dataclass(frozen=True, slots=True)
class SecretsBundle:
    """Every secret of one Talos cluster (PEM bytes for certificates and keys)."""

    cluster_id: str
    cluster_secret: str
    bootstrap_token: str
    secretbox_encryption_secret: str
    trustd_token: str
    etcd: CertAndKey
    k8s: CertAndKey
    k8s_aggregator: CertAndKey
    k8s_service_account_key: bytes
    os: CertAndKey
    aescbc_encryption_secret: str = ""


def generate_token() -> str:
    """A Kubernetes-style bootstrap token ``[0-9a-z]{6}.[0-9a-z]{16}`` from a CSPRNG."""
    first = "".join(secrets.choice(_TOKEN_CHARS) for _ in range(6))
    second = "".join(secrets.choice(_TOKEN_CHARS) for _ in range(16))
    return f"{first}.{second}"


def _random_b64(size: int, *, urlsafe: bool = False) -> str:
    raw = secrets.token_bytes(size)
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()


def generate_bundle(now: datetime, contract: VersionContract) -> SecretsBundle:
    """Generate a fresh bundle; CAs are valid from ``now`` for ten years.

    The service-account key is RSA-4096 (slow: about a second) as Talos > 1.6 uses.
    """
    service_account = generate_key("rsa4096")
    return SecretsBundle(
        # Before 1.14 talosctl encoded the cluster id URL-safe; 1.14 switched to standard.
        cluster_id=_random_b64(CLUSTER_ID_BYTES, urlsafe=not contract.at_least(1, 14)),
        cluster_secret=_random_b64(CLUSTER_SECRET_BYTES),
        bootstrap_token=generate_token(),
        secretbox_encryption_secret=_random_b64(ENCRYPTION_SECRET_BYTES),
        trustd_token=generate_token(),
        etcd=new_ca("ecdsa", "etcd", now),
        k8s=new_ca("ecdsa", "kubernetes", now),
        k8s_aggregator=new_ca("ecdsa", None, now),
        k8s_service_account_key=private_key_pem(service_account),
        os=new_ca("ed25519", "talos", now),
    )


def _b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode()


def _pair(value: CertAndKey) -> dict[str, str]:
    return {"crt": _b64(value.crt), "key": _b64(value.key)}


def bundle_to_dict(bundle: SecretsBundle) -> dict[str, Any]:
    """The bundle as the ordered mapping ``talosctl gen secrets`` writes."""
    secrets_section = {"bootstraptoken": bundle.bootstrap_token}
    # Both encryption secrets are "omitempty" in Talos's struct.
    if bundle.aescbc_encryption_secret:
        secrets_section["aescbcencryptionsecret"] = bundle.aescbc_encryption_secret
    if bundle.secretbox_encryption_secret:
        secrets_section["secretboxencryptionsecret"] = bundle.secretbox_encryption_secret
    return {
        "cluster": {"id": bundle.cluster_id, "secret": bundle.cluster_secret},
        "secrets": secrets_section,
        "trustdinfo": {"token": bundle.trustd_token},
        "certs": {
            "etcd": _pair(bundle.etcd),
            "k8s": _pair(bundle.k8s),
            "k8saggregator": _pair(bundle.k8s_aggregator),
            "k8sserviceaccount": {"key": _b64(bundle.k8s_service_account_key)},
            "os": _pair(bundle.os),
        },
    }


def dump_bundle(bundle: SecretsBundle) -> str:
    """Encode a bundle in ``talosctl gen secrets`` YAML."""
    return goyaml.dump(bundle_to_dict(bundle))


def _get(tree: Mapping[str, Any], path: str) -> Any:  # noqa: ANN401 - YAML values are untyped
    node: Any = tree
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            msg = f"{path}: missing"
            raise SecretsFormatError(msg)
        node = node[part]
    return node


def _text(tree: Mapping[str, Any], path: str, *, optional: bool = False) -> str:
    try:
        value = _get(tree, path)
    except SecretsFormatError:
        if optional:
            return ""
        raise
    if not isinstance(value, str):
        msg = f"{path}: expected a string"
        raise SecretsFormatError(msg)
    return value


def _pem(tree: Mapping[str, Any], path: str) -> bytes:
    try:
        return base64.b64decode(_text(tree, path), validate=True)
    except ValueError as exc:
        msg = f"{path}: not valid base64 ({exc})"
        raise SecretsFormatError(msg) from exc


def bundle_from_dict(tree: Mapping[str, Any]) -> SecretsBundle:
    """Build a bundle from the parsed ``talosctl gen secrets`` mapping."""
    return SecretsBundle(
        cluster_id=_text(tree, "cluster.id"),
        cluster_secret=_text(tree, "cluster.secret"),
        bootstrap_token=_text(tree, "secrets.bootstraptoken"),
        secretbox_encryption_secret=_text(tree, "secrets.secretboxencryptionsecret", optional=True),
        aescbc_encryption_secret=_text(tree, "secrets.aescbcencryptionsecret", optional=True),
        trustd_token=_text(tree, "trustdinfo.token"),
        etcd=CertAndKey(_pem(tree, "certs.etcd.crt"), _pem(tree, "certs.etcd.key")),
        k8s=CertAndKey(_pem(tree, "certs.k8s.crt"), _pem(tree, "certs.k8s.key")),
        k8s_aggregator=CertAndKey(
            _pem(tree, "certs.k8saggregator.crt"), _pem(tree, "certs.k8saggregator.key")
        ),
        k8s_service_account_key=_pem(tree, "certs.k8sserviceaccount.key"),
        os=CertAndKey(_pem(tree, "certs.os.crt"), _pem(tree, "certs.os.key")),
    )


def load_bundle(text: str) -> SecretsBundle:
    """Parse ``talosctl gen secrets`` YAML (every scalar is read as a string)."""
    try:
        # BaseLoader: no implicit typing, so a token such as "123456.789..." stays a string.
        tree = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds only str/list/dict
    except yaml.YAMLError as exc:
        msg = f"not valid YAML: {exc}"
        raise SecretsFormatError(msg) from exc
    if not isinstance(tree, Mapping):
        msg = "a secrets bundle must be a YAML mapping"
        raise SecretsFormatError(msg)
    return bundle_from_dict(tree)
