"""The lab agent's shell functions, run with the same busybox the initramfs carries."""

from __future__ import annotations

import base64
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lab_support import talos_config, talos_token

from lab.initramfs import AGENT_DIR
from provisioner.talos.pki import LeafSpec, issue_leaf, new_ca, subject_name
from provisioner.talos.trustd import sign_csr

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


def _node_csr() -> bytes:
    """A CSR like the agent's: ECDSA P-256, O=os:worker, an IP SAN."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "os:worker")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("10.77.0.11"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def test_agent_accepts_our_trustd_certificate_with_its_clock_behind(tmp_path: Path) -> None:
    """The agent checks the certificate at once, by its own clock, which starts from the
    RTC (whole seconds) and runs ~0.5-1.5 s behind the host: as if trustd signed 2 s in the
    node's future, the certificate must still verify (issue 11 #2)."""
    now = datetime.now(UTC)
    os_ca = new_ca("ed25519", "talos", now - timedelta(hours=1))
    (tmp_path / "ca.pem").write_bytes(os_ca.crt)
    (tmp_path / "node.crt").write_bytes(sign_csr(_node_csr(), os_ca, now + timedelta(seconds=2)))
    out = busybox(f"cert_verdict {tmp_path / 'ca.pem'} {tmp_path / 'node.crt'}")
    assert out.decode().strip() == "ok"


def test_agent_names_why_a_certificate_is_rejected(tmp_path: Path) -> None:
    """The FAILED marker carries openssl's reason, the node's clock and the notBefore."""
    now = datetime.now(UTC)
    os_ca = new_ca("ed25519", "talos", now - timedelta(hours=1))
    spec = LeafSpec(subject=subject_name(common_name="n"), validity=timedelta(hours=1), server_auth=True)
    future = issue_leaf(os_ca, spec, now + timedelta(minutes=10), kind="ecdsa")
    (tmp_path / "ca.pem").write_bytes(os_ca.crt)
    (tmp_path / "node.crt").write_bytes(future.crt)
    out = busybox(f"cert_verdict {tmp_path / 'ca.pem'} {tmp_path / 'node.crt'}").decode().strip()
    assert out.startswith("error 9 at 0 depth lookup: certificate is not yet valid (node clock 20"), out
    assert "notBefore=" in out
    other = new_ca("ed25519", "talos", now - timedelta(hours=1))
    (tmp_path / "other.pem").write_bytes(other.crt)
    out = busybox(f"cert_verdict {tmp_path / 'other.pem'} {tmp_path / 'node.crt'}").decode().strip()
    assert out.startswith("error "), out
    assert "certificate signature failure" in out or "unable to get local issuer" in out, out


def test_epoch_now_reads_the_clock_to_the_microsecond() -> None:
    """The clock the agent prints with its certificate check (busybox date has no %N)."""
    before = time.time()
    out = busybox("epoch_now").decode().strip()
    after = time.time()
    assert re.fullmatch(r"\d{10}\.\d{6}", out), out
    assert before - 0.01 <= float(out) <= after + 0.01
