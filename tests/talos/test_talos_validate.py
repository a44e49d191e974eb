"""Validation: schema per document with Talos's quirks, plus the rules beyond the schema."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from provisioner.talos import goyaml
from provisioner.talos.config import ClusterSpec, MachineSpec, generate_documents
from provisioner.talos.contract import NEWEST
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.validate import detect_contract, validate_config, validate_documents

from .conftest import V113, V114, golden_text

Docs = list[dict[str, Any]]


def _docs(bundle: SecretsBundle, role: str, contract: Any = V113, **machine: Any) -> Docs:
    cluster = ClusterSpec(
        "lab", "https://10.77.0.10:6443", "1.34.1", contract, bundle, install_disk="/dev/sda"
    )
    return generate_documents(
        cluster, MachineSpec("controlplane" if role == "controlplane" else "worker", **machine)
    )


def _errors(docs: Docs) -> list[str]:
    # Round-trip through text so that the YAML reader is exercised too.
    return validate_config(goyaml.dump_all(docs))


def _set(docs: Docs, path: str, value: Any) -> Docs:
    node: Any = docs[0]
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return docs


@pytest.mark.parametrize(
    "name", ["v1.13-base-controlplane.yaml", "v1.13-base-worker.yaml", "v1.14-base-controlplane.yaml"]
)
def test_talos_golden_configs_are_valid_off_metal(name: str) -> None:
    assert validate_config(golden_text(name), mode="cloud") == []
    # On metal Talos needs an install disk, which the golden configs do not set.
    assert validate_config(golden_text(name)) == [
        "machine.install: either install disk or diskSelector should be defined"
        if name.startswith("v1.13")
        else "UnattendedInstallConfig: an install disk is required on metal (provisioner rule)"
    ]


def test_generated_configs_are_valid(fresh_bundle: SecretsBundle) -> None:
    for contract in (V113, V114):
        for role in ("controlplane", "worker"):
            assert _errors(_docs(fresh_bundle, role, contract)) == [], (contract, role)


def test_contract_is_detected_from_shape(golden_bundle: SecretsBundle) -> None:
    assert detect_contract(_docs(golden_bundle, "worker", V113)) == V113
    assert detect_contract(_docs(golden_bundle, "worker", V114)) == NEWEST


MUTATIONS: list[tuple[str, str, Callable[[Docs, SecretsBundle, SecretsBundle], Docs], str]] = [
    (
        "ca key in worker",
        "worker",
        lambda d, b, _o: _set(d, "machine.ca.key", base64.b64encode(b.os.key).decode()),
        "machine.ca: issuing Talos API CA key is not allowed on non-controlplane nodes (.machine.ca)",
    ),
    (
        "k8s ca key in worker",
        "worker",
        lambda d, b, _o: _set(d, "cluster.ca.key", base64.b64encode(b.k8s.key).decode()),
        "cluster.ca: issuing Kubernetes API CA key is not allowed on non-controlplane nodes (.cluster.ca)",
    ),
    (
        "no os ca key on controlplane",
        "controlplane",
        lambda d, _b, _o: _set(d, "machine.ca.key", ""),
        "machine.ca: issuing CA key is required for controlplane nodes (.machine.ca.key)",
    ),
    (
        "bad machine token",
        "worker",
        lambda d, _b, _o: _set(d, "machine.token", "ABCDEF.0123456789abcdef"),
        "machine.token: must match [0-9a-z]{6}.[0-9a-z]{16} (got 'ABCDEF.0123456789abcdef')",
    ),
    (
        "bad bootstrap token",
        "controlplane",
        lambda d, _b, _o: _set(d, "cluster.token", "short.token"),
        "cluster.token: must match [0-9a-z]{6}.[0-9a-z]{16} (got 'short.token')",
    ),
    (
        "http endpoint",
        "worker",
        lambda d, _b, _o: _set(d, "cluster.controlPlane.endpoint", "http://10.77.0.10:6443"),
        "cluster.controlPlane.endpoint: must be an https:// URL with a host (got 'http://10.77.0.10:6443')",
    ),
    (
        "unknown field",
        "worker",
        lambda d, _b, _o: _set(d, "machine.bogus", True),
        "doc[0] v1alpha1: machine: Additional properties are not allowed ('bogus' was unexpected)",
    ),
    (
        "wrong type",
        "worker",
        lambda d, _b, _o: _set(d, "machine.install.wipe", "no"),
        "doc[0] v1alpha1: machine.install.wipe: 'no' is not of type 'boolean'",
    ),
    (
        "cert not matching key",
        "controlplane",
        lambda d, _b, o: _set(d, "machine.ca.key", base64.b64encode(o.os.key).decode()),
        "machine.ca: certificate does not match its private key",
    ),
    (
        "missing install disk",
        "worker",
        lambda d, _b, _o: _set(d, "machine.install", {"wipe": False}),
        "machine.install: either install disk or diskSelector should be defined",
    ),
    (
        "pem not base64",
        "worker",
        lambda d, _b, _o: _set(d, "machine.ca.crt", "%%%"),
        "machine.ca.crt: not valid base64",
    ),
    (
        "pem not a certificate",
        "worker",
        lambda d, _b, _o: _set(d, "machine.ca.crt", base64.b64encode(b"hello").decode()),
        "machine.ca.crt: not a PEM certificate",
    ),
    (
        "short cluster secret",
        "worker",
        lambda d, _b, _o: _set(d, "cluster.secret", base64.b64encode(b"x" * 16).decode()),
        "cluster.secret: must be base64 of 32 bytes",
    ),
    (
        "unknown kind",
        "worker",
        lambda d, _b, _o: [*d, {"apiVersion": "v1alpha1", "kind": "NoSuchConfig"}],
        "doc[2] NoSuchConfig: unknown document kind 'NoSuchConfig'",
    ),
]


@pytest.mark.parametrize(("case", "role", "mutate", "message"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_mutation_is_caught(
    fresh_bundle: SecretsBundle,
    other_bundle: SecretsBundle,
    case: str,
    role: str,
    mutate: Callable[[Docs, SecretsBundle, SecretsBundle], Docs],
    message: str,
) -> None:
    docs = mutate(_docs(fresh_bundle, role), fresh_bundle, other_bundle)
    assert message in _errors(docs), case


def test_114_worker_must_not_carry_kubernetes_ca_key(fresh_bundle: SecretsBundle) -> None:
    docs = _docs(fresh_bundle, "worker", V114)
    ca = next(doc for doc in docs if doc.get("kind") == "KubeAPIServerCAConfig")
    ca["issuingCA"] = {"cert": fresh_bundle.k8s.crt.decode(), "key": fresh_bundle.k8s.key.decode()}
    docs.append({"apiVersion": "v1alpha1", "kind": "KubeAggregatorCAConfig",
                 "issuingCA": {"cert": fresh_bundle.k8s_aggregator.crt.decode(),
                               "key": fresh_bundle.k8s_aggregator.key.decode()}})  # fmt: skip
    errors = _errors(docs)
    assert "KubeAPIServerCAConfig.issuingCA.key: a worker config must not carry a CA private key" in errors
    assert (
        "config: the following document kinds are only allowed on control plane machines: [KubeAggregatorCAConfig]"
        in errors
    )


def test_114_multidoc_pem_mismatch(fresh_bundle: SecretsBundle, other_bundle: SecretsBundle) -> None:
    docs = _docs(fresh_bundle, "controlplane", V114)
    agg = next(doc for doc in docs if doc.get("kind") == "KubeAggregatorCAConfig")
    agg["issuingCA"]["key"] = other_bundle.k8s_aggregator.key.decode()
    assert "KubeAggregatorCAConfig.issuingCA: certificate does not match its private key" in _errors(docs)


def test_schema_quirks_are_allowed(fresh_bundle: SecretsBundle) -> None:
    docs = _docs(fresh_bundle, "worker", V114)
    kinds = [doc.get("kind") for doc in docs]
    assert "UnattendedInstallConfig" in kinds  # the 1.14 schema calls it UnattendedInstall
    assert docs[0]["persist"] is True  # deprecated, not in the schema, still written by Talos
    docs.append({"apiVersion": "v1alpha1", "kind": "ImageVerificationConfig", "rules": []})
    docs.append(
        {
            "apiVersion": "v1alpha1",
            "kind": "KubeSpanEndpointsConfig",
            "extraAnnouncedEndpoints": ["1.2.3.4:51820"],
        }
    )
    assert _errors(docs) == []


def test_yaml_problems_are_reported() -> None:
    assert validate_config("a: [\n")[0].startswith("yaml: ")
    assert "duplicate key 'debug'" in validate_config("version: v1alpha1\ndebug: false\ndebug: true\n")[0]
    assert validate_config("") == ["config: empty document"]


def test_config_without_main_document() -> None:
    errors = validate_documents(
        [{"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "stable"}], mode="cloud"
    )
    assert errors == ["config: the v1alpha1 document (version: v1alpha1) is missing"]


def test_deprecated_fields_talos_still_accepts(golden_bundle: SecretsBundle) -> None:
    docs = _docs(golden_bundle, "worker", V113)
    docs[0]["machine"]["network"] = {"nameservers": ["10.77.0.1"]}
    docs[0]["machine"]["features"]["rbac"] = True
    docs[0]["machine"]["install"]["extensions"] = [{"image": "ghcr.io/siderolabs/gvisor:1"}]
    assert _errors(docs) == []
    # ...but only in the v1alpha1 document, and only those fields.
    next(doc for doc in docs if doc.get("kind") == "HostnameConfig")["persist"] = True
    assert _errors(docs) == [
        "doc[1] HostnameConfig: (document): Additional properties are not allowed ('persist' was unexpected)"
    ]


def test_deprecated_fields_keep_go_order_after_patches(golden_bundle: SecretsBundle) -> None:
    from provisioner.talos.patches import ConfigPatch

    patch = ConfigPatch.parse("machine:\n  features:\n    rbac: true\n  network:\n    hostname: x\n")
    cluster = ClusterSpec("lab", "https://10.77.0.10:6443", "1.34.1", V113, golden_bundle, patches=(patch,))
    machine = generate_documents(cluster, MachineSpec("worker"))[0]["machine"]
    assert list(machine).index("network") == list(machine).index("kubelet") + 1
    assert next(iter(machine["features"])) == "rbac"
