"""What a simulated Talos node does with its config: get a certificate for its own address.

A worker sends a CSR to trustd from its own address (gRPC over TLS verified against machine.ca.crt, the
machine token as `token` metadata: Talos internal/app/trustd, pkg/grpc/middleware/auth/
basic). A control plane signs it itself with machine.ca.key, as Talos's apid does. The
certificate then goes on TCP 50000 of the node's address, where the daemon's trust check
looks for it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import struct
import tempfile
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from provisioner.talos.wire import CertificateRequest, decode_response, encode_request

METHOD = "/securityapi.SecurityService/Certificate"


async def certificate(config: bytes, m: dict[str, Any], trustd: str) -> tuple[bytes | None, bytes, str]:
    """(certificate PEM or None if the config has no OS CA, key PEM, how it was obtained)."""
    docs = [d for d in yaml.safe_load_all(config) if isinstance(d, dict)]
    machine = next((d.get("machine") for d in docs if "machine" in d), None) or {}
    ca = machine.get("ca") or {}
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if not ca.get("crt"):
        return None, key_pem, "none"
    kind = machine.get("type", "worker")
    ip = ipaddress.ip_address(m["ip"])
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"os:{kind}"),
                         x509.NameAttribute(NameOID.COMMON_NAME, m["name"])])  # fmt: skip
    sans = x509.SubjectAlternativeName([x509.DNSName(m["name"]), x509.IPAddress(ip)])
    ca_pem = base64.b64decode(ca["crt"])
    if kind in {"controlplane", "init"}:
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        ca_key_pem = base64.b64decode(ca["key"]).replace(b"ED25519 PRIVATE KEY", b"PRIVATE KEY")
        ca_key = serialization.load_pem_private_key(ca_key_pem, None)
        assert isinstance(ca_key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(sans, critical=False)
            .sign(ca_key, None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem, "self"
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(sans, critical=False)
    csr_pem = csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    # gRPC over HTTP/2 from the node's own address (curl --interface, as the lab's agent
    # does): trustd refuses a CSR naming an inventory address other than the caller's.
    response = await _grpc_from(
        m["ip"], trustd, ca_pem, machine["token"], encode_request(CertificateRequest(csr_pem))
    )
    return decode_response(response).crt, key_pem, "trustd"


async def _grpc_from(local: str, trustd: str, ca_pem: bytes, token: str, message: bytes) -> bytes:
    """One unary gRPC call (length-prefixed message, gRPC over HTTP/2) sent from LOCAL."""
    with tempfile.TemporaryDirectory(prefix="pv-storm-node-") as tmp:
        work = Path(tmp)
        (work / "ca.pem").write_bytes(ca_pem)
        (work / "req.bin").write_bytes(b"\0" + struct.pack("!I", len(message)) + message)
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--http2", "--interface", local, "--max-time", "60", "--cacert", str(work / "ca.pem"),
            "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", f"token: {token}",
            "--data-binary", f"@{work / 'req.bin'}", "-D", str(work / "headers"), "-o", str(work / "resp.bin"),
            f"https://{trustd}{METHOD}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            msg = f"curl to trustd: {err.decode(errors='replace').strip()}"
            raise RuntimeError(msg)
        body = (work / "resp.bin").read_bytes() if (work / "resp.bin").exists() else b""
        if len(body) < 5:  # a trailers-only answer: the status is in the headers
            status = [h for h in (work / "headers").read_text().splitlines() if h.lower().startswith("grpc-")]
            msg = f"trustd refused: {'; '.join(status) or 'empty answer'}"
            raise RuntimeError(msg)
        size = struct.unpack_from("!I", body, 1)[0]
        return body[5 : 5 + size]
