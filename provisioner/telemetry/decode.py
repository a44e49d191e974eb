"""Talos machine events (``google.protobuf.Any`` in a siderolink ``EventRequest``) to readable lines.

Pure: no I/O. The message types are Talos's own (``api/machine/machine.proto``, see
``proto/README.md``); Talos packs them with ``anypb.New``, so the type URL ends in the
full message name (``type.googleapis.com/machine.SequenceEvent``).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError, Message

from provisioner.talos.api.pb.machine import machine_pb2 as m
from provisioner.telemetry.pb.events import events_pb2

__all__ = ["NodeEvent", "TelemetryDecodeError", "decode_event", "decode_request"]

_TYPES: dict[str, type[Message]] = {
    "machine.SequenceEvent": m.SequenceEvent,
    "machine.PhaseEvent": m.PhaseEvent,
    "machine.TaskEvent": m.TaskEvent,
    "machine.ServiceStateEvent": m.ServiceStateEvent,
    "machine.MachineStatusEvent": m.MachineStatusEvent,
    "machine.ConfigLoadErrorEvent": m.ConfigLoadErrorEvent,
    "machine.ConfigValidationErrorEvent": m.ConfigValidationErrorEvent,
    "machine.AddressEvent": m.AddressEvent,
    "machine.RestartEvent": m.RestartEvent,
}


class TelemetryDecodeError(ValueError):
    """The request is not a Talos event we can read."""


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """One decoded node event: its Talos type, a readable line, and the message itself."""

    type: str
    """Short Talos name, e.g. `SequenceEvent`."""
    line: str
    message: Message
    event_id: str = ""
    actor_id: str = ""
    error: str = ""
    """The node's own error text when the event reports a failure, else empty."""


def _enum(msg: Message, field: str) -> str:
    descriptor = msg.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(msg, field)
    item = descriptor.values_by_number.get(value)
    return item.name if item is not None else str(value)


def _describe(name: str, msg: Message) -> tuple[str, str]:  # noqa: PLR0911
    """(line, error) for one event message."""
    if isinstance(msg, m.SequenceEvent):
        if msg.HasField("error") and msg.error.message:
            return f"sequence {msg.sequence} {_enum(msg, 'action')}: {msg.error.message}", msg.error.message
        return f"sequence {msg.sequence} {_enum(msg, 'action')}", ""
    if isinstance(msg, m.PhaseEvent):
        return f"phase {msg.phase} {_enum(msg, 'action')}", ""
    if isinstance(msg, m.TaskEvent):
        return f"task {msg.task} {_enum(msg, 'action')}", ""
    if isinstance(msg, m.ServiceStateEvent):
        text = f"service {msg.service} {_enum(msg, 'action')}"
        return (f"{text}: {msg.message}" if msg.message else text), ""
    if isinstance(msg, m.MachineStatusEvent):
        unmet = ", ".join(f"{c.name}: {c.reason}" for c in msg.status.unmet_conditions)
        ready = "ready" if msg.status.ready else "not ready"
        return f"machine {_enum(msg, 'stage')} ({ready}{'; ' + unmet if unmet else ''})", ""
    if isinstance(msg, m.ConfigLoadErrorEvent):
        return f"config load error: {msg.error}", msg.error or "config load error"
    if isinstance(msg, m.ConfigValidationErrorEvent):
        return f"config validation error: {msg.error}", msg.error or "config validation error"
    if isinstance(msg, m.AddressEvent):
        return f"addresses of {msg.hostname}: {', '.join(msg.addresses)}", ""
    if isinstance(msg, m.RestartEvent):
        return f"restart (cmd {msg.cmd})", ""
    return name, ""


def decode_request(payload: bytes) -> NodeEvent:
    """Decode a serialized ``events.EventRequest``; raises TelemetryDecodeError."""
    request = events_pb2.EventRequest()
    try:
        request.ParseFromString(payload)
    except DecodeError as exc:
        msg = f"not an EventRequest: {exc}"
        raise TelemetryDecodeError(msg) from None
    return decode_event(request)


def decode_event(request: events_pb2.EventRequest) -> NodeEvent:
    """Decode the Talos event inside a parsed ``events.EventRequest``; raises TelemetryDecodeError."""
    full_name = request.data.type_url.rpartition("/")[2]
    cls = _TYPES.get(full_name)
    if cls is None:
        msg = f"unknown event type {full_name or '(none)'!r}"
        raise TelemetryDecodeError(msg)
    message = cls()
    try:
        message.ParseFromString(request.data.value)
    except DecodeError as exc:
        msg = f"bad {full_name}: {exc}"
        raise TelemetryDecodeError(msg) from None
    short = full_name.partition(".")[2]
    line, error = _describe(short, message)
    return NodeEvent(short, line, message, request.id, request.actor_id, error)
