"""Helpers for the lab tests: a running lab handle, a throw-away OS CA, certificates, a
Talos-like machine config."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from lab import control

REPO = Path(__file__).resolve().parents[2]

_ALNUM = string.ascii_lowercase + string.digits


def talos_token() -> str:
    """A token shaped like Talos's: ``[0-9a-z]{6}.[0-9a-z]{16}``."""
    first, second = ("".join(secrets.choice(_ALNUM) for _ in range(n)) for n in (6, 16))
    return f"{first}.{second}"


def make_os_ca(directory: Path) -> tuple[bytes, bytes]:
    """Write an Ed25519 ``O=talos`` CA (ca.pem, ca.key) and return (cert PEM, key PEM)."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "talos")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None)
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "ca.pem").write_bytes(cert_pem)
    (directory / "ca.key").write_bytes(key_pem)
    return cert_pem, key_pem


def make_server_cert(directory: Path, ca_pem: bytes, ca_key_pem: bytes, ip: str, stem: str) -> None:
    """Write ``stem``.crt/.key: an ECDSA server certificate for ``ip`` signed by the CA."""
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=24))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False
        )
        .sign(ca_key, None)  # type: ignore[arg-type]
    )
    (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def talos_config(role: str, token: str, ca_pem: bytes, ca_key_pem: bytes | None, endpoint: str) -> str:
    """A Talos-like v1alpha1 machine config (4-space YAML), enough for the lab agent."""
    crt = base64.b64encode(ca_pem).decode()
    key = ""
    if ca_key_pem is not None:  # Talos labels Ed25519 keys "ED25519 PRIVATE KEY"
        key = base64.b64encode(ca_key_pem.replace(b"PRIVATE KEY", b"ED25519 PRIVATE KEY")).decode()
    return (
        "version: v1alpha1\n"
        "debug: false\n"
        "persist: true\n"
        "machine:\n"
        f"    type: {role}\n"
        f"    token: {token}\n"
        "    ca:\n"
        f"        crt: {crt}\n"
        f'        key: "{key}"\n'
        "    certSANs: []\n"
        "cluster:\n"
        "    controlPlane:\n"
        f"        endpoint: {endpoint}\n"
        "    clusterName: lab\n"
        f"    token: {talos_token()}\n"
    )


@dataclass(frozen=True)
class Lab:
    """A running lab."""

    options: control.LabOptions
    password: str

    @property
    def namespace(self) -> str:
        """The lab's network namespace."""
        return self.options.namespace

    def netns(
        self, *argv: str, timeout: float = 30, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the lab namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv],
            capture_output=True, text=True, timeout=timeout, check=check, env=env,
        )  # fmt: skip

    def ipmitool(self, port: int, *args: str) -> str:
        """Run ipmitool (lanplus) against a lab BMC."""
        argv = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", "admin",
                "-E", *args]  # fmt: skip
        proc = subprocess.run(
            ["ip", "netns", "exec", self.namespace, *argv],
            capture_output=True, text=True, timeout=60, check=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IPMI_PASSWORD": self.password},
        )  # fmt: skip
        return proc.stdout


def lab_options(state_dir: Path, machines: int = 2, firmware: str = "bios") -> control.LabOptions:
    """Options for a test lab in a fresh, uniquely named namespace, owned by this process
    (so that, if this test run is killed, the next one takes the lab down)."""
    return control.LabOptions(
        state_dir=state_dir,
        namespace=f"pv-lab-{secrets.token_hex(3)}",
        machines=machines,
        firmware=firmware,
        owner_pid=os.getpid(),
    )
