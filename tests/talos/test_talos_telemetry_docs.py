"""EventSinkConfig and KmsgLogConfig appended to a generated config: valid for Talos, and the
Talos-generated documents before them unchanged byte for byte."""

from __future__ import annotations

import pytest

from provisioner.talos.config import ClusterSpec, MachineSpec, generate_config
from provisioner.talos.contract import VersionContract
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.validate import validate_config
from provisioner.talos.yamlload import load_all
from provisioner.telemetry.documents import KMSG_LOG_NAME, telemetry_documents

from .conftest import V113, V114


@pytest.mark.parametrize("contract", [V113, V114])
@pytest.mark.parametrize("role", ["controlplane", "worker"])
def test_appended_documents_validate_and_keep_the_talos_part(
    fresh_bundle: SecretsBundle, contract: VersionContract, role: str
) -> None:
    cluster = ClusterSpec("lab", "https://10.77.0.10:6443", "1.34.1", contract, fresh_bundle)
    talos_part = generate_config(cluster, MachineSpec(role, install_disk="/dev/vda"))  # type: ignore[arg-type]
    text = talos_part + telemetry_documents("10.77.0.1:4002", "tcp://10.77.0.1:4003")
    assert text.startswith(talos_part)
    assert validate_config(text, contract) == []
    docs = load_all(text)
    assert docs[-2:] == [
        {"apiVersion": "v1alpha1", "kind": "EventSinkConfig", "endpoint": "10.77.0.1:4002"},
        {
            "apiVersion": "v1alpha1",
            "kind": "KmsgLogConfig",
            "name": KMSG_LOG_NAME,
            "url": "tcp://10.77.0.1:4003",
        },
    ]
