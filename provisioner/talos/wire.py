"""Protobuf wire codec for trustd's two messages (``security.proto``), written by hand.

Why by hand rather than ``grpc_tools.protoc``-generated ``_pb2`` modules: the messages are
two and tiny (``CertificateRequest{bytes csr = 1}``, ``CertificateResponse{bytes ca = 1;
bytes crt = 2}``); hand-coding them avoids a build step, generated code that mypy
--strict and ruff reject, and a runtime dependency on a matching protobuf version.  The
codec follows the protobuf encoding spec (varint tags, length-delimited fields, proto3
omission of empty fields, unknown fields skipped) and is tested against the real
``protobuf`` runtime.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CertificateRequest",
    "CertificateResponse",
    "WireError",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """The bytes are not a valid encoding of the expected message."""


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """``securityapi.CertificateRequest``: a PEM certificate signing request."""

    csr: bytes


@dataclass(frozen=True, slots=True)
class CertificateResponse:
    """``securityapi.CertificateResponse``: PEM CA certificate(s) and the signed certificate."""

    ca: bytes
    crt: bytes


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    for count in range(_MAX_VARINT_BYTES):
        if pos >= len(data):
            break
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos
        if count == _MAX_VARINT_BYTES - 1:
            break
    msg = "truncated or overlong varint"
    raise WireError(msg)


def _bytes_field(number: int, value: bytes) -> bytes:
    if not value:
        return b""  # proto3 does not encode default (empty) values
    return _varint(number << 3 | _LENGTH) + _varint(len(value)) + value


def _fields(data: bytes) -> dict[int, bytes]:
    """Length-delimited fields by number (last one wins, as protobuf specifies)."""
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            msg = "field number 0 is invalid"
            raise WireError(msg)
        if wire_type == _VARINT:
            _, pos = _read_varint(data, pos)
        elif wire_type == _FIXED64:
            pos += 8
        elif wire_type == _FIXED32:
            pos += 4
        elif wire_type == _LENGTH:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                msg = "length-delimited field runs past the end"
                raise WireError(msg)
            fields[number] = data[pos : pos + length]
            pos += length
        else:
            msg = f"unsupported wire type {wire_type}"
            raise WireError(msg)
        if pos > len(data):
            msg = "truncated field"
            raise WireError(msg)
    return fields


def encode_request(message: CertificateRequest) -> bytes:
    """Serialize a CertificateRequest."""
    return _bytes_field(1, message.csr)


def decode_request(data: bytes) -> CertificateRequest:
    """Parse a CertificateRequest; unknown fields are ignored."""
    return CertificateRequest(csr=_fields(data).get(1, b""))


def encode_response(message: CertificateResponse) -> bytes:
    """Serialize a CertificateResponse."""
    return _bytes_field(1, message.ca) + _bytes_field(2, message.crt)


def decode_response(data: bytes) -> CertificateResponse:
    """Parse a CertificateResponse; unknown fields are ignored."""
    fields = _fields(data)
    return CertificateResponse(ca=fields.get(1, b""), crt=fields.get(2, b""))
