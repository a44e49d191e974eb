"""The two listeners: the gRPC event sink and the JSON-lines kernel-log receiver.

Thin shells: they read the wire, name the peer's address, and hand the rest to a
`TelemetryHandler` (service.py). Talos dials the sink with plain-text gRPC
(events_sink.go: `insecure.NewCredentials()`), and the log receiver with a plain TCP
connection writing one JSON object per line (sender_jsonlines.go).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Protocol

import grpc

from provisioner.telemetry.decode import TelemetryDecodeError, decode_event
from provisioner.telemetry.pb.events import events_pb2, events_pb2_grpc

__all__ = ["EventSinkServer", "KmsgServer", "TelemetryHandler", "peer_address"]

log = logging.getLogger(__name__)

_READ_CHUNK = 65536


class TelemetryHandler(Protocol):
    """What the listeners report to."""

    def node_event(self, source: str, event: object) -> bool:
        """One decoded event from `source`; False when it is dropped."""

    def bad_event(self, source: str, reason: str) -> None:
        """An undecodable request from `source`."""

    def log_source(self, source: str) -> str | None:
        """The machine a log connection from `source` belongs to, or None to refuse it."""

    def log_line(self, machine: str, source: str, raw: bytes) -> None:
        """One raw line (no newline) from an accepted log connection."""

    def log_line_too_long(self, source: str) -> None:
        """A line longer than the limit was dropped."""


def peer_address(peer: str) -> str:
    """The peer string of grpc (`ipv4:10.0.0.5:4711`, `ipv6:[::1]:4711`) to a bare address."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        host = rest.rpartition(":")[0].strip("[]")
    elif kind == "ipv4":
        host = rest.rpartition(":")[0]
    else:
        return ""
    with contextlib.suppress(ValueError):
        mapped = ipaddress.ip_address(host)
        if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
            return str(mapped.ipv4_mapped)
        return str(mapped)
    return ""


class _Servicer(events_pb2_grpc.EventSinkServiceServicer):  # type: ignore[misc]
    def __init__(self, handler: TelemetryHandler) -> None:
        self._handler = handler

    async def Publish(  # noqa: N802 - the gRPC method name
        self, request: events_pb2.EventRequest, context: grpc.aio.ServicerContext
    ) -> events_pb2.EventResponse:
        source = peer_address(context.peer())
        try:
            event = decode_event(request)
        except TelemetryDecodeError as exc:
            # Answer OK anyway: Talos retries a failed Publish forever (events_sink.go),
            # and an event we cannot read will not become readable by resending it.
            self._handler.bad_event(source, str(exc))
            return events_pb2.EventResponse()
        self._handler.node_event(source, event)
        return events_pb2.EventResponse()


class EventSinkServer:
    """`events.EventSinkService/Publish` on a grpc.aio server."""

    def __init__(self, handler: TelemetryHandler, host: str, port: int) -> None:
        self._handler = handler
        self._address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._server: grpc.aio.Server | None = None
        self.port = port

    async def start(self) -> None:
        """Bind and serve; raises OSError naming the address when the port is taken."""
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        events_pb2_grpc.add_EventSinkServiceServicer_to_server(_Servicer(self._handler), server)
        try:
            self.port = server.add_insecure_port(self._address)
        except RuntimeError as exc:
            msg = f"cannot listen on {self._address}: {exc}"
            raise OSError(msg) from None
        if self.port == 0:  # older grpcio reports a failed bind this way
            msg = f"cannot listen on {self._address}"
            raise OSError(msg)
        await server.start()
        self._server = server

    async def stop(self) -> None:
        """Stop at once (in-flight calls get a short grace)."""
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None


class KmsgServer:
    """TCP receiver of JSON log lines, one connection per node."""

    def __init__(self, handler: TelemetryHandler, host: str, port: int, *, max_line: int) -> None:
        self._handler = handler
        self._host = host
        self._port = port
        self._max_line = max_line
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.port = port

    async def start(self) -> None:
        """Bind and serve."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        peer = writer.get_extra_info("peername")
        source = str(ipaddress.ip_address(peer[0])) if peer else ""
        try:
            machine = self._handler.log_source(source)
            if machine is None:
                return
            await self._lines(reader, machine, source)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._conns.discard(task)

    async def _lines(self, reader: asyncio.StreamReader, machine: str, source: str) -> None:
        buffer = bytearray()
        skipping = False  # inside an over-long line: drop bytes up to its newline
        while chunk := await reader.read(_READ_CHUNK):
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end]).rstrip(b"\r")
                del buffer[: end + 1]
                if skipping:
                    skipping = False
                elif len(line) > self._max_line:
                    self._handler.log_line_too_long(source)
                elif line.strip():
                    self._handler.log_line(machine, source, line)
            if len(buffer) > self._max_line:
                if not skipping:
                    self._handler.log_line_too_long(source)
                skipping = True
                buffer.clear()
