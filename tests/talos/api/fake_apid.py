"""An in-process apid for the client's unit tests, built from the same committed stubs.

Real TLS: a server certificate signed by the OS CA with the node's IP as SAN, client
certificates required and chained to the OS CA, and Talos's role check (the roles are the
client certificate's O= values; a call without ``os:admin`` gets PERMISSION_DENIED "not
authorized" as Talos's ``pkg/grpc/middleware/authz`` answers).

TLS is terminated by Python's ssl module (OpenSSL) in front of a plaintext gRPC server,
not by gRPC's own server: gRPC's BoringSSL does not offer Ed25519 among the signature
algorithms of its CertificateRequest, so it cannot accept the Ed25519 client certificates
Talos uses, while Go's crypto/tls (apid) and OpenSSL do.  The front verifies the client
chain against the OS CA, reads the roles and passes the connection to the node's gRPC
server for ``os:admin`` or to one that answers every call PERMISSION_DENIED otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import ssl
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID
from google.protobuf import empty_pb2

from provisioner.talos.api.pb.common import common_pb2
from provisioner.talos.api.pb.machine import machine_pb2
from provisioner.talos.pki import CertAndKey, LeafSpec, issue_leaf, pkcs8_pem, subject_name

KUBECONFIG = (
    b"apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://10.0.0.1:6443\n"
)


def server_certificate(
    os_ca: CertAndKey, ips: tuple[str, ...] = ("127.0.0.1",), dns: tuple[str, ...] = ()
) -> CertAndKey:
    now = datetime.now(UTC)
    spec = LeafSpec(
        subject=subject_name(common_name="node-1"),
        validity=timedelta(hours=1),
        server_auth=True,
        ip_addresses=ips,
        dns_names=dns,
        backdate=timedelta(minutes=1),
    )
    return issue_leaf(os_ca, spec, now, kind="ecdsa")


def kubeconfig_archive(content: bytes = KUBECONFIG, name: str = "kubeconfig") -> bytes:
    """A tar.gz shaped like Talos's Kubeconfig stream."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o600
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue())


@dataclass
class FakeApid:
    """State and knobs of the fake node; ``calls`` records (method, request) pairs."""

    hostname: str = "node-1"
    bootstrapped: bool = False
    delay: float = 0.0
    abort: tuple[grpc.StatusCode, str] | None = None
    reply_error: str = ""
    kubeconfig: bytes = field(default_factory=kubeconfig_archive)
    chunk_size: int = 64
    calls: list[tuple[str, Any]] = field(default_factory=list)
    port: int = 0
    server: Any = None

    def _meta(self) -> common_pb2.Metadata:
        return common_pb2.Metadata(hostname=self.hostname, error=self.reply_error)

    async def _guard(self, name: str, request: Any, context: Any) -> None:
        self.calls.append((name, request))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.abort is not None:
            await context.abort(*self.abort)

    async def version(self, request: Any, context: Any) -> machine_pb2.VersionResponse:
        await self._guard("Version", request, context)
        return machine_pb2.VersionResponse(
            messages=[
                machine_pb2.Version(
                    metadata=self._meta(),
                    version=machine_pb2.VersionInfo(tag="v1.13.9", sha="3ebd10a7", arch="amd64"),
                    platform=machine_pb2.PlatformInfo(name="metal", mode="metal"),
                )
            ]
        )

    async def bootstrap(self, request: Any, context: Any) -> machine_pb2.BootstrapResponse:
        await self._guard("Bootstrap", request, context)
        if self.bootstrapped:
            # Talos v1.13 v1alpha1_server.go Bootstrap.
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, "etcd data directory is not empty")
        self.bootstrapped = True
        return machine_pb2.BootstrapResponse(messages=[machine_pb2.Bootstrap(metadata=self._meta())])

    async def service_list(self, request: Any, context: Any) -> machine_pb2.ServiceListResponse:
        await self._guard("ServiceList", request, context)
        etcd = machine_pb2.ServiceInfo(
            id="etcd",
            state="Running",
            health=machine_pb2.ServiceHealth(
                healthy=True, last_message="", last_change={"seconds": 1767322800}
            ),
        )
        kubelet = machine_pb2.ServiceInfo(
            id="kubelet",
            state="Preparing",
            health=machine_pb2.ServiceHealth(unknown=True, last_message="waiting"),
        )
        return machine_pb2.ServiceListResponse(
            messages=[machine_pb2.ServiceList(metadata=self._meta(), services=[etcd, kubelet])]
        )

    async def etcd_member_list(self, request: Any, context: Any) -> machine_pb2.EtcdMemberListResponse:
        await self._guard("EtcdMemberList", request, context)
        member = machine_pb2.EtcdMember(
            id=0x8E9E05C52164694D,
            hostname="node-1",
            peer_urls=["https://10.0.0.11:2380"],
            client_urls=["https://10.0.0.11:2379"],
        )
        learner = machine_pb2.EtcdMember(id=7, hostname="node-2", is_learner=True)
        return machine_pb2.EtcdMemberListResponse(
            messages=[machine_pb2.EtcdMembers(metadata=self._meta(), members=[member, learner])]
        )

    async def kubeconfig_stream(self, request: Any, context: Any) -> Any:
        await self._guard("Kubeconfig", request, context)
        data = self.kubeconfig
        for start in range(0, len(data), self.chunk_size):
            yield common_pb2.Data(metadata=self._meta(), bytes=data[start : start + self.chunk_size])

    async def reboot(self, request: Any, context: Any) -> machine_pb2.RebootResponse:
        await self._guard("Reboot", request, context)
        return machine_pb2.RebootResponse(messages=[machine_pb2.Reboot(metadata=self._meta())])

    async def reset(self, request: Any, context: Any) -> machine_pb2.ResetResponse:
        await self._guard("Reset", request, context)
        return machine_pb2.ResetResponse(messages=[machine_pb2.Reset(metadata=self._meta())])

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, req: Any, resp: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        empty = empty_pb2.Empty
        return grpc.method_handlers_generic_handler(
            "machine.MachineService",
            {
                "Version": unary(self.version, empty, machine_pb2.VersionResponse),
                "Bootstrap": unary(
                    self.bootstrap, machine_pb2.BootstrapRequest, machine_pb2.BootstrapResponse
                ),
                "ServiceList": unary(self.service_list, empty, machine_pb2.ServiceListResponse),
                "EtcdMemberList": unary(
                    self.etcd_member_list,
                    machine_pb2.EtcdMemberListRequest,
                    machine_pb2.EtcdMemberListResponse,
                ),
                "Kubeconfig": grpc.unary_stream_rpc_method_handler(
                    self.kubeconfig_stream,
                    request_deserializer=empty.FromString,
                    response_serializer=common_pb2.Data.SerializeToString,
                ),
                "Reboot": unary(self.reboot, machine_pb2.RebootRequest, machine_pb2.RebootResponse),
                "Reset": unary(self.reset, machine_pb2.ResetRequest, machine_pb2.ResetResponse),
            },
        )

    async def start(self, os_ca: CertAndKey, server_cert: CertAndKey) -> None:
        self._node = grpc.aio.server()
        self._node.add_generic_rpc_handlers((self.handler(),))
        node_port = self._node.add_insecure_port("127.0.0.1:0")
        self._deny = grpc.aio.server()
        self._deny.add_generic_rpc_handlers((_DenyAll(),))
        deny_port = self._deny.add_insecure_port("127.0.0.1:0")
        await self._node.start()
        await self._deny.start()
        self._front = _TlsFront(os_ca, server_cert, node_port, deny_port)
        self.port = await self._front.start()

    async def stop(self) -> None:
        if self._front is not None:
            await self._front.stop()
        for server in (self._node, self._deny):
            if server is not None:
                await server.stop(None)

    _node: Any = None
    _deny: Any = None
    _front: Any = None


class _DenyAll(grpc.GenericRpcHandler):
    """Every method: PERMISSION_DENIED "not authorized" (Talos authz.ErrNotAuthorized)."""

    def service(self, handler_call_details: Any) -> Any:
        async def deny(request: bytes, context: Any) -> bytes:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not authorized")
            return b""

        return grpc.unary_unary_rpc_method_handler(deny)


def _roles(der: bytes) -> list[str]:
    cert = x509.load_der_x509_certificate(der)
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


class _TlsFront:
    """Mutual TLS on 127.0.0.1 (OpenSSL), piping each connection to a backend by role."""

    def __init__(self, os_ca: CertAndKey, server_cert: CertAndKey, node_port: int, deny_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(cadata=os_ca.crt.decode())
        self.context.set_alpn_protocols(["h2"])  # gRPC clients insist on ALPN h2
        with tempfile.TemporaryDirectory() as tmp:
            crt, key = Path(tmp) / "crt.pem", Path(tmp) / "key.pem"
            crt.write_bytes(server_cert.crt)
            key.write_bytes(pkcs8_pem(server_cert.key))
            self.context.load_cert_chain(crt, key)
        self.node_port = node_port
        self.deny_port = deny_port
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        port = self.node_port if "os:admin" in _roles(der) else self.deny_port
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        self.tasks.update(pipes)
        try:
            await asyncio.gather(*pipes)
        finally:
            self.tasks.difference_update(pipes)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
