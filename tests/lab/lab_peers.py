"""Stand-in peers for the lab boot test, run inside the lab namespace as one process.

An HTTP server (boot script, kernel, initramfs, ``/config``) and a trustd stand-in
(grpcio generic handler for ``securityapi.SecurityService/Certificate``, TLS with a server
certificate signed by the test's OS CA, checks the ``token`` metadata, signs the CSR with
the CA: server-auth only, 24 h). Every request is appended to ``requests.jsonl`` in the
served directory. Usage: python peers.py DIR HTTP_PORT TRUSTD_PORT TOKEN
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from concurrent import futures
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

_LOCK = threading.Lock()


def record(directory: Path, entry: dict[str, Any]) -> None:
    """Append one request record."""
    with _LOCK, (directory / "requests.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


class Handler(SimpleHTTPRequestHandler):
    """Static files plus /config (the worker config, recorded with its query)."""

    def do_GET(self) -> None:
        """Serve a file; record the request."""
        split = urlsplit(self.path)
        directory = Path(self.directory)
        record(
            directory,
            {
                "kind": "http",
                "path": split.path,
                "raw_query": split.query,
                "query": parse_qs(split.query),
                "client": self.client_address[0],
            },
        )
        if split.path == "/config":  # one config per MAC: config-525400770011.yaml
            mac = parse_qs(split.query).get("mac", [""])[0].replace(":", "").lower()
            self.path = f"/config-{mac}.yaml"
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


def _field(data: bytes, want: int) -> bytes:
    """Return length-delimited field ``want`` of a protobuf message."""
    pos = 0
    while pos < len(data):
        tag = data[pos]
        pos += 1
        length = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if tag >> 3 == want and tag & 7 == 2:
            return data[pos : pos + length]
        pos += length
    return b""


def _bytes_field(number: int, value: bytes) -> bytes:
    out = bytearray([number << 3 | 2])
    length = len(value)
    while length >= 0x80:
        out.append(length & 0x7F | 0x80)
        length >>= 7
    out.append(length)
    return bytes(out) + value


def certificate(directory: Path, token: str, request: bytes, context: grpc.ServicerContext) -> bytes:
    """trustd's Certificate: check the token, sign the CSR with the OS CA."""
    metadata = dict(context.invocation_metadata())
    ok = metadata.get("token") == token
    record(directory, {"kind": "trustd", "token_ok": ok, "peer": context.peer()})
    if not ok:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "bad token")
    ca_pem = (directory / "ca.pem").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    csr = x509.load_pem_x509_csr(_field(request, 1))
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=24))
        .add_extension(san, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, None)  # type: ignore[arg-type]
    )
    crt = cert.public_bytes(serialization.Encoding.PEM)
    return _bytes_field(1, ca_pem) + _bytes_field(2, crt)


def main() -> None:
    """Serve until killed."""
    directory, http_port, trustd_port, token = (
        Path(sys.argv[1]),
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.unary_unary_rpc_method_handler(partial(certificate, directory, token))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("securityapi.SecurityService", {"Certificate": handler})]
    )
    creds = grpc.ssl_server_credentials(
        [((directory / "trustd.key").read_bytes(), (directory / "trustd.crt").read_bytes())]
    )
    server.add_secure_port(f"10.77.0.1:{trustd_port}", creds)
    server.start()
    httpd = ThreadingHTTPServer(("10.77.0.1", http_port), partial(Handler, directory=str(directory)))
    (directory / "peers.ready").write_text("ok", encoding="ascii")
    httpd.serve_forever()


if __name__ == "__main__":
    main()
