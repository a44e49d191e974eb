"""The lab agent's shell functions, run with the same busybox the initramfs carries."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from lab_support import talos_config, talos_token

from lab.initramfs import AGENT_DIR

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.lab
# Talos's own generated worker config (reference data, origin in tests/data/talos/README.md).
GOLDEN = Path(__file__).resolve().parents[1] / "data/talos/golden/v1.13-base-worker.yaml"


def busybox(script: str, stdin: bytes = b"") -> bytes:
    """Run ``script`` in busybox sh after sourcing the agent's lib.sh."""
    proc = subprocess.run(
        ["busybox", "sh", "-c", f". {AGENT_DIR / 'lib.sh'}; {script}"],
        input=stdin, capture_output=True, check=True, timeout=10,
    )  # fmt: skip
    return proc.stdout


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "http://10.77.0.1:8080/config?uuid=${uuid}&mac=${mac}",
            (
                "http://10.77.0.1:8080/config?mac=52%3A54%3A00%3A77%3A00%3A11"
                "&uuid=00000000-0000-4000-8000-525400770011"
            ),
        ),
        (  # values are decoded then re-encoded; text around a variable is kept
            "http://h/c?t=a%2Fb&s=${serial}&h=x-${hostname}",
            "http://h/c?h=x-lab-w1&s=LAB+0011&t=a%2Fb",
        ),
        ("http://h/plain", "http://h/plain"),
    ],
)
def test_talos_url_substitution(template: str, expected: str) -> None:
    """${mac}/${uuid}/${serial}/${hostname} as Talos does: inside query values, re-encoded."""
    out = busybox(
        'talos_expand_url "$T" 52:54:00:77:00:11 00000000-0000-4000-8000-525400770011 '
        '"LAB 0011" lab-w1'.replace("$T", template.replace("$", "\\$"))
    )
    assert out.decode().strip() == expected


def test_cmdline_arg() -> None:
    """The first NAME= word of the command line."""
    out = busybox("cmdline_arg talos.config 'quiet talos.config=http://x/c?a=1&b=2 x=1'")
    assert out.decode().strip() == "http://x/c?a=1&b=2"


def _flat_get(config: bytes) -> Callable[[str], str]:
    flat = busybox("yaml_flatten", config)
    return lambda key: busybox(f"yaml_get {key}", flat).decode().strip()


def test_yaml_flatten_reads_a_lab_config() -> None:
    """machine.type, machine.token (not cluster.token), CA cert and key, the endpoint."""
    token = talos_token()
    config = talos_config("controlplane", token, b"CERT", b"KEY", "https://10.77.0.1:6443")
    get = _flat_get(config.encode())
    assert get("machine.type") == "controlplane"
    assert get("machine.token") == token
    assert get("cluster.controlPlane.endpoint") == "https://10.77.0.1:6443"
    assert base64.b64decode(get("machine.ca.crt")) == b"CERT"
    assert base64.b64decode(get("machine.ca.key")) == b"KEY"


def test_yaml_flatten_reads_talos_golden_worker_config() -> None:
    """The same fields from a config Talos itself generated (4-space YAML, no comments)."""
    get = _flat_get(GOLDEN.read_bytes())
    assert get("machine.type") == "worker"
    assert get("machine.token") == "d8cwfa.eyvpi0xwxyarbfid"
    assert get("cluster.controlPlane.endpoint") == "https://base:6443"
    assert get("machine.ca.key") == ""
    assert base64.b64decode(get("machine.ca.crt")).startswith(b"-----BEGIN CERTIFICATE-----")


def test_kube_cluster_endpoint_of_a_talos_1_14_multidoc_config() -> None:
    """Talos 1.14+ has no cluster.controlPlane.endpoint: the agent's trustd fallback reads
    the KubeClusterConfig document (not DiscoveryServiceConfig's endpoint)."""
    golden = GOLDEN.with_name("v1.14-base-controlplane.yaml").read_bytes()
    assert _flat_get(golden)("cluster.controlPlane.endpoint") == ""
    assert busybox("kube_cluster_endpoint", golden).decode().strip() == "https://base:6443"
    single = GOLDEN.read_bytes()
    assert busybox("kube_cluster_endpoint", single).decode().strip() == ""


def test_install_disk_from_v1alpha1_or_unattended_install_selector(tmp_path: Path) -> None:
    """machine.install.disk, else the UnattendedInstallConfig dev_path selector (1.14+)."""
    v1 = tmp_path / "v1.yaml"
    v1.write_text("version: v1alpha1\nmachine:\n    install:\n        disk: /dev/vda\n")
    multi = tmp_path / "multi.yaml"
    multi.write_text(
        "version: v1alpha1\nmachine:\n    type: worker\n---\napiVersion: v1alpha1\n"
        "kind: UnattendedInstallConfig\nprovisioning:\n    diskSelector:\n"
        '        match: disk.dev_path == "/dev/sdz"\n'
    )
    install = f". {AGENT_DIR / 'install.sh'}; install_config_disk"
    assert busybox(f"{install} {v1}").decode().strip() == "/dev/vda"
    assert busybox(f"{install} {multi}").decode().strip() == "/dev/sdz"


def test_grpc_frames_round_trip(tmp_path: Path) -> None:
    """A CertificateRequest frame (varint length > 127) and a response field extraction."""
    csr = tmp_path / "csr"
    csr.write_bytes(b"C" * 300)
    frame = bytes.fromhex(busybox(f"grpc_request_frame {csr}").decode().strip())
    assert frame[:5] == b"\x00\x00\x00\x01\x2f"  # no compression, 303-byte message
    assert frame[5:8] == b"\x0a\xac\x02"  # field 1, length-delimited, varint 300
    assert frame[8:] == b"C" * 300
    ca, crt = b"A" * 200, b"B" * 5
    message = b"\x0a\xc8\x01" + ca + b"\x12\x05" + crt
    response = b"\x00" + len(message).to_bytes(4, "big") + message
    for number, want in ((1, ca), (2, crt)):
        out = busybox(f"grpc_response_field {number}", response.hex().encode())
        assert bytes.fromhex(out.decode().strip()) == want
