"""An asyncio client for the Talos API (apid, TCP 50000) with mutual TLS.

One :class:`TalosClient` talks to one node: the channel dials ``host:50000``, presents the
short-lived ``os:admin`` certificate and verifies the node's certificate against the OS CA
and the dialled address (see :mod:`provisioner.talos.api.credentials`).  Every call has a
deadline; a failed call raises a :class:`~provisioner.talos.api.errors.TalosApiError`
subclass naming the method, the node and what the gRPC status means for Talos.

Method names and request fields are Talos's (``api/machine/machine.proto``, service
``machine.MachineService``); the messages come from the committed stubs in ``pb/``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar

import grpc
from google.protobuf import empty_pb2

from provisioner.talos.api.credentials import AdminCredentials
from provisioner.talos.api.decode import (
    EtcdMember,
    NodeVersion,
    ServiceStatus,
    check_metadata,
    decode_etcd_members,
    decode_services,
    decode_version,
    extract_kubeconfig,
    join_chunks,
)
from provisioner.talos.api.errors import TalosApiError, map_status
from provisioner.talos.api.pb.common import common_pb2
from provisioner.talos.api.pb.machine import machine_pb2
from provisioner.talos.pki import pkcs8_pem

__all__ = ["APID_PORT", "SERVICE", "RebootMode", "TalosApiSettings", "TalosClient", "WipeMode", "target"]

APID_PORT = 50000  # Talos constants.ApidPort
SERVICE = "machine.MachineService"

RebootMode = Literal["default", "powercycle", "force"]
WipeMode = Literal["all", "system-disk", "user-disks"]
_REBOOT_MODES: dict[str, machine_pb2.RebootRequest.Mode] = {
    "default": machine_pb2.RebootRequest.DEFAULT,
    "powercycle": machine_pb2.RebootRequest.POWERCYCLE,
    "force": machine_pb2.RebootRequest.FORCE,
}
_WIPE_MODES: dict[str, machine_pb2.ResetRequest.WipeMode] = {
    "all": machine_pb2.ResetRequest.ALL,
    "system-disk": machine_pb2.ResetRequest.SYSTEM_DISK,
    "user-disks": machine_pb2.ResetRequest.USER_DISKS,
}


@dataclass(frozen=True, slots=True)
class TalosApiSettings:
    """Where apid listens and how long a call may take (seconds)."""

    port: int = APID_PORT
    timeout: float = 10.0
    # Kubeconfig makes the node sign a certificate and stream it back: allow more.
    kubeconfig_timeout: float = 30.0


def target(host: str, port: int = APID_PORT) -> str:
    """``host:port`` as gRPC wants it (IPv6 literals in brackets)."""
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


def _method(name: str) -> str:
    return f"/{SERVICE}/{name}"


class _Request(Protocol):
    def SerializeToString(self) -> bytes: ...  # noqa: N802 - protobuf's name


R = TypeVar("R")


def _serialize(message: _Request) -> bytes:
    return message.SerializeToString()


class TalosClient:
    """Calls to one Talos node; use as ``async with TalosClient(host, creds) as client``."""

    def __init__(
        self, host: str, credentials: AdminCredentials, settings: TalosApiSettings | None = None
    ) -> None:
        self.settings = settings or TalosApiSettings()
        self.endpoint = target(host, self.settings.port)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=credentials.ca_crt,
            private_key=pkcs8_pem(credentials.client.key),
            certificate_chain=credentials.client.crt,
        )
        self._channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> Self:
        self._channel = grpc.aio.secure_channel(self.endpoint, self._credentials)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel (idempotent)."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def _require_channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            raise RuntimeError("TalosClient used outside 'async with'")
        return self._channel

    def _error(self, name: str, exc: grpc.aio.AioRpcError) -> TalosApiError:
        return map_status(name, self.endpoint, exc.code().name, exc.details() or "")

    async def _unary(
        self, name: str, request: _Request, decode: Callable[[bytes], R], timeout: float | None
    ) -> R:
        call: Callable[..., Any] = self._require_channel().unary_unary(
            _method(name), request_serializer=_serialize, response_deserializer=decode
        )
        try:
            reply: R = await call(request, timeout=timeout or self.settings.timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._error(name, exc) from None
        return reply

    async def version(self, *, timeout: float | None = None) -> NodeVersion:
        """Talos version, platform and mode of the node."""
        reply = await self._unary(
            "Version", empty_pb2.Empty(), machine_pb2.VersionResponse.FromString, timeout
        )
        return decode_version(self.endpoint, reply)

    async def bootstrap(
        self,
        *,
        recover_etcd: bool = False,
        recover_skip_hash_check: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Bootstrap etcd on this control-plane node (once per cluster).

        A node already bootstrapped raises ``TalosAlreadyBootstrappedError``.
        """
        request = machine_pb2.BootstrapRequest(
            recover_etcd=recover_etcd, recover_skip_hash_check=recover_skip_hash_check
        )
        reply = await self._unary("Bootstrap", request, machine_pb2.BootstrapResponse.FromString, timeout)
        check_metadata("Bootstrap", self.endpoint, reply.messages)

    async def service_list(self, *, timeout: float | None = None) -> tuple[ServiceStatus, ...]:
        """The node's Talos services (etcd, kubelet, apid...) with state and health."""
        reply = await self._unary(
            "ServiceList", empty_pb2.Empty(), machine_pb2.ServiceListResponse.FromString, timeout
        )
        return decode_services(self.endpoint, reply)

    async def etcd_member_list(
        self, *, query_local: bool = False, timeout: float | None = None
    ) -> tuple[EtcdMember, ...]:
        """The etcd member list as seen from this node (``query_local``: its local member only)."""
        request = machine_pb2.EtcdMemberListRequest(query_local=query_local)
        reply = await self._unary(
            "EtcdMemberList", request, machine_pb2.EtcdMemberListResponse.FromString, timeout
        )
        return decode_etcd_members(self.endpoint, reply)

    async def _stream(self, name: str, request: _Request, timeout: float) -> AsyncIterator[common_pb2.Data]:
        call: Callable[..., Any] = self._require_channel().unary_stream(
            _method(name), request_serializer=_serialize, response_deserializer=common_pb2.Data.FromString
        )
        try:
            async for message in call(request, timeout=timeout):
                yield message
        except grpc.aio.AioRpcError as exc:
            raise self._error(name, exc) from None

    async def kubeconfig(self, *, timeout: float | None = None) -> bytes:
        """The cluster's admin kubeconfig, from the tar.gz the node streams in chunks."""
        chunks: list[bytes] = []
        async for data in self._stream(
            "Kubeconfig", empty_pb2.Empty(), timeout or self.settings.kubeconfig_timeout
        ):
            check_metadata("Kubeconfig", self.endpoint, [data])
            chunks.append(data.bytes)
        return extract_kubeconfig(join_chunks(chunks))

    async def reboot(self, *, mode: RebootMode = "default", timeout: float | None = None) -> None:
        """Reboot the node."""
        request = machine_pb2.RebootRequest(mode=_REBOOT_MODES[mode])
        reply = await self._unary("Reboot", request, machine_pb2.RebootResponse.FromString, timeout)
        check_metadata("Reboot", self.endpoint, reply.messages)

    async def reset(
        self,
        *,
        graceful: bool = True,
        reboot: bool = True,
        wipe: WipeMode = "system-disk",
        user_disks: tuple[str, ...] = (),
        timeout: float | None = None,
    ) -> None:
        """Reset the node: leave etcd (``graceful``), wipe, then reboot or halt.

        The default wipes the system disk and reboots, so the machine PXE-boots again.
        """
        request = machine_pb2.ResetRequest(
            graceful=graceful, reboot=reboot, mode=_WIPE_MODES[wipe], user_disks_to_wipe=list(user_disks)
        )
        reply = await self._unary("Reset", request, machine_pb2.ResetResponse.FromString, timeout)
        check_metadata("Reset", self.endpoint, reply.messages)
