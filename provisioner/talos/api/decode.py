"""Talos API replies turned into plain frozen values (no I/O, no gRPC).

Every Talos reply wraps one message per node (``repeated ... messages``) with
``common.Metadata``; apid fills ``metadata.error`` when it proxied the call and the node
failed (Talos ``api/common/common.proto``).  The client talks to one node at a time, so
each decoder takes the messages, raises on a reported error and returns the values.

Kubeconfig is a server stream of ``common.Data`` chunks which, joined, are a tar.gz holding
one regular file named ``kubeconfig`` (Talos v1.13 ``v1alpha1_server.go`` Kubeconfig:
"wrap in .tar.gz to match Copy protocol").
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from provisioner.talos.api.errors import TalosReplyError
from provisioner.talos.api.pb.common import common_pb2
from provisioner.talos.api.pb.machine import machine_pb2

__all__ = [
    "KUBECONFIG_MAX_BYTES",
    "EtcdMember",
    "KubeconfigError",
    "NodeVersion",
    "ServiceStatus",
    "check_metadata",
    "decode_etcd_members",
    "decode_services",
    "decode_version",
    "extract_kubeconfig",
    "join_chunks",
]

# A kubeconfig is a few KiB; anything this large is not one (and bounds a gzip bomb).
KUBECONFIG_MAX_BYTES = 1 << 20
KUBECONFIG_MEMBER = "kubeconfig"


class _Reply(Protocol):
    """One node's message in a reply: every Talos reply message carries ``metadata``."""

    @property
    def metadata(self) -> common_pb2.Metadata: ...

    def HasField(self, field_name: str) -> bool: ...  # noqa: N802 - protobuf's name


M = TypeVar("M", bound=_Reply)


class KubeconfigError(ValueError):
    """The Kubeconfig stream did not hold a tar.gz with a ``kubeconfig`` file."""


@dataclass(frozen=True, slots=True)
class NodeVersion:
    """What ``Version`` says about a node."""

    hostname: str
    tag: str
    sha: str
    arch: str
    platform: str
    mode: str


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One Talos service from ``ServiceList`` (``state`` is Talos's, e.g. ``Running``)."""

    id: str
    state: str
    healthy: bool
    health_unknown: bool
    last_message: str
    last_change: datetime | None


@dataclass(frozen=True, slots=True)
class EtcdMember:
    """One etcd member from ``EtcdMemberList``."""

    id: int
    hostname: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


def check_metadata(method: str, endpoint: str, messages: Sequence[_Reply]) -> None:
    """Raise :class:`TalosReplyError` if a node reported an error in a reply's metadata."""
    for message in messages:
        if message.HasField("metadata") and message.metadata.error:
            raise TalosReplyError(method, endpoint, "REPLY", message.metadata.error, "the node reported")


def _one(method: str, endpoint: str, messages: Sequence[M]) -> M:
    check_metadata(method, endpoint, messages)
    if len(messages) != 1:
        detail = f"{len(messages)} messages"
        raise TalosReplyError(method, endpoint, "REPLY", detail, "expected one node's reply")
    return messages[0]


def decode_version(endpoint: str, reply: machine_pb2.VersionResponse) -> NodeVersion:
    """A ``VersionResponse`` as :class:`NodeVersion`."""
    message = _one("Version", endpoint, reply.messages)
    return NodeVersion(
        hostname=message.metadata.hostname,
        tag=message.version.tag,
        sha=message.version.sha,
        arch=message.version.arch,
        platform=message.platform.name,
        mode=message.platform.mode,
    )


def _last_change(health: machine_pb2.ServiceHealth) -> datetime | None:
    if not health.HasField("last_change"):
        return None
    ts = health.last_change
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def decode_services(endpoint: str, reply: machine_pb2.ServiceListResponse) -> tuple[ServiceStatus, ...]:
    """A ``ServiceListResponse`` as :class:`ServiceStatus` values, in the node's order."""
    message = _one("ServiceList", endpoint, reply.messages)
    return tuple(
        ServiceStatus(
            id=service.id,
            state=service.state,
            healthy=service.health.healthy,
            health_unknown=service.health.unknown,
            last_message=service.health.last_message,
            last_change=_last_change(service.health),
        )
        for service in message.services
    )


def decode_etcd_members(endpoint: str, reply: machine_pb2.EtcdMemberListResponse) -> tuple[EtcdMember, ...]:
    """An ``EtcdMemberListResponse`` as :class:`EtcdMember` values."""
    message = _one("EtcdMemberList", endpoint, reply.messages)
    return tuple(
        EtcdMember(
            id=member.id,
            hostname=member.hostname,
            peer_urls=tuple(member.peer_urls),
            client_urls=tuple(member.client_urls),
            is_learner=member.is_learner,
        )
        for member in message.members
    )


def join_chunks(chunks: Iterable[bytes], limit: int = KUBECONFIG_MAX_BYTES) -> bytes:
    """Join stream chunks, refusing more than ``limit`` bytes in all."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) > limit:
            raise KubeconfigError(f"Kubeconfig stream is larger than {limit} bytes")
    return bytes(buffer)


def extract_kubeconfig(archive: bytes, limit: int = KUBECONFIG_MAX_BYTES) -> bytes:
    """The ``kubeconfig`` file inside the tar.gz that Talos streams."""
    try:
        # Decompress with a bound first: tarfile would inflate without one.
        with gzip.GzipFile(fileobj=io.BytesIO(archive)) as gz:
            tar_bytes = gz.read(limit + 1)
    except (OSError, EOFError) as exc:
        raise KubeconfigError(f"Kubeconfig stream is not gzip data: {exc}") from exc
    if len(tar_bytes) > limit:
        raise KubeconfigError(f"Kubeconfig archive inflates to more than {limit} bytes")
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for member in tar:
                if member.name.removeprefix("./") != KUBECONFIG_MEMBER:
                    continue
                if not member.isreg():
                    raise KubeconfigError("Kubeconfig archive's 'kubeconfig' is not a regular file")
                extracted = tar.extractfile(member)
                if extracted is None:  # pragma: no cover - isreg() members always extract
                    break
                return extracted.read()
    except tarfile.TarError as exc:
        raise KubeconfigError(f"Kubeconfig stream is not a tar archive: {exc}") from exc
    raise KubeconfigError("Kubeconfig archive has no 'kubeconfig' file")
