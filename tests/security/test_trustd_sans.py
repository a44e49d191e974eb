"""Issue 14 (low): trustd must not sign another inventory machine's address for a worker.

Every worker of a cluster holds the same machine token, so before the fix any holder got
a server certificate (signed by the OS CA) for whatever SANs it asked for, a control-plane
node's address included. Now SANs naming another inventory machine's address are refused
(PERMISSION_DENIED, an ALERT event), and every decision records the SANs asked for.
Real gRPC over TLS on loopback; the guard is the one the daemon wires in.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from provisioner.events import MemoryEventSink, Severity
from provisioner.matching import MachineIndex
from provisioner.model import MachineSummary
from provisioner.talos.service import san_guard
from provisioner.talos.trustd import StaticResolver, foreign_addresses, start_trustd
from tests.talos.conftest import NOW
from tests.talos.test_talos_trustd import _call, _worker_view

if TYPE_CHECKING:
    from provisioner.talos.secrets import SecretsBundle

MACHINES = [
    MachineSummary(name="cp1", macs=("52:54:00:77:00:10",), ip="127.0.0.5"),
    MachineSummary(name="w1", macs=("52:54:00:77:00:11",), ip="127.0.0.1"),  # the requester
]


def _csr(*ips: str) -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    sans = x509.SubjectAlternativeName(
        [x509.DNSName("w1"), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "w1")])
    )
    return (
        builder.add_extension(sans, critical=False).sign(key, None).public_bytes(serialization.Encoding.PEM)
    )


def test_foreign_addresses() -> None:
    inventory = ["10.77.0.10", "10.77.0.11", ""]
    assert foreign_addresses(["10.77.0.11", "10.77.0.10", "10.99.0.1"], "10.77.0.11", inventory) == [
        "10.77.0.10"
    ]
    assert foreign_addresses(["10.77.0.11"], "10.77.0.11", inventory) == []


async def test_worker_cannot_get_another_machines_address(fresh_bundle: SecretsBundle) -> None:
    events = MemoryEventSink()
    index = MachineIndex(MACHINES)

    def machines() -> MachineIndex:
        return index

    resolver = StaticResolver.from_bundles([fresh_bundle], ["127.0.0.1"], NOW)
    server = await start_trustd(
        "127.0.0.1", 0, resolver, clock=lambda: NOW, guard=san_guard(machines, events)
    )
    try:
        ca, token = _worker_view(fresh_bundle)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _call(server.port, ca, token, _csr("127.0.0.1", "127.0.0.5"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "127.0.0.5" in str(refused.value.details())
        own = await _call(server.port, ca, token, _csr("127.0.0.1", "10.244.0.1"))
        cert = x509.load_pem_x509_certificate(own.crt)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "10.244.0.1"]
    finally:
        await server.stop(None)
    # A cluster certSAN the operator declared (every machine's config carries it) is allowed
    # even when it is an inventory machine's address (a control-plane IP used as endpoint).
    server = await start_trustd(
        "127.0.0.1", 0, resolver, clock=lambda: NOW, guard=san_guard(machines, events, {"127.0.0.5"})
    )
    try:
        declared = await _call(server.port, ca, token, _csr("127.0.0.1", "127.0.0.5"))
        assert declared.crt
    finally:
        await server.stop(None)
    alert, signed = events.events[:2]
    assert alert.kind == "trustd.refused" and alert.severity is Severity.ALERT
    assert alert.data["ip_addresses"] == ["127.0.0.1", "127.0.0.5"] and alert.data["peer"] == "127.0.0.1"
    assert signed.kind == "trustd.signed" and signed.data["dns_names"] == ["w1"]
    assert signed.data["ip_addresses"] == ["127.0.0.1", "10.244.0.1"]
