"""Small helpers shared by the Talos rule modules (YAML navigation, address and URL checks)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CONTROL_PLANE_TYPES",
    "Doc",
    "Rule",
    "endpoint_problem",
    "get",
    "is_subnet_or_address",
    "machine_type_of",
    "of_kind",
]

Doc = Mapping[str, Any]
Rule = Callable[[Doc, list[Doc], str], Iterator[str]]

CONTROL_PLANE_TYPES = ("init", "controlplane")
# machine.ParseType: "join" and "" mean worker (with a warning), "unknown" is refused.
_MACHINE_TYPES = {
    "init": "init",
    "controlplane": "controlplane",
    "worker": "worker",
    "join": "worker",
    "": "worker",
}


def get(doc: object, *path: str) -> Any:  # noqa: ANN401 - YAML values are untyped
    """``doc[path[0]][path[1]]...``, or None where a step is missing or not a mapping."""
    for part in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(part)
    return doc


def machine_type_of(main: Doc) -> str | None:
    """The machine type as Talos parses it (``join``/empty mean worker), None when unknown."""
    return _MACHINE_TYPES.get(str(get(main, "machine", "type") or ""))


def is_subnet_or_address(text: str) -> bool:
    """sideronet.ParseSubnetOrAddress: a CIDR or a bare address."""
    try:
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def endpoint_problem(url: str) -> str | None:
    """sideronet.ValidateEndpointURI: bracketed IPv6, a host, a port in range."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if parts.netloc.count(":") > 2 and ("[" not in parts.netloc or "]" not in parts.netloc):
        return "IPv6 addresses MUST be enclosed by square brackets"
    if not parts.hostname:
        return "hostname must not be blank"
    if port is not None and not 1 <= port <= 65535:
        return "port number must be between 1 and 65535"
    return None


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    """The documents of one kind."""
    return [doc for doc in docs if doc.get("kind") == kind]
