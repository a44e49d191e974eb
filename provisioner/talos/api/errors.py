"""Talos API errors: gRPC status codes turned into messages an operator can act on.

apid and machined answer with plain gRPC status codes; the ones a provisioner meets are
listed in :data:`_EXPLANATIONS` with what they mean for a Talos node (sources: Talos
v1.13 ``pkg/grpc/middleware/authz/authorizer.go`` for PERMISSION_DENIED "not authorized",
``internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go`` for Bootstrap's
FAILED_PRECONDITION "bootstrap is not available yet"/"time is not in sync yet" and
ALREADY_EXISTS "etcd data directory is not empty").  The mapping is a pure function of
(method, code name, details) so it is tested without a network.
"""

from __future__ import annotations

__all__ = [
    "TalosAlreadyBootstrappedError",
    "TalosApiError",
    "TalosNotReadyError",
    "TalosPermissionError",
    "TalosReplyError",
    "TalosTimeoutError",
    "TalosUnavailableError",
    "map_status",
]


class TalosApiError(Exception):
    """A Talos API call failed; ``code`` is the gRPC status code name (``UNAVAILABLE``...)."""

    def __init__(self, method: str, endpoint: str, code: str, details: str, explanation: str) -> None:
        self.method = method
        self.endpoint = endpoint
        self.code = code
        self.details = details
        suffix = f" ({code}: {details})" if details else f" ({code})"
        super().__init__(f"Talos {method} on {endpoint}: {explanation}{suffix}")


class TalosUnavailableError(TalosApiError):
    """apid did not answer: down, not listening yet, or the TLS handshake failed."""


class TalosTimeoutError(TalosApiError):
    """No answer before the call's deadline."""


class TalosPermissionError(TalosApiError):
    """apid refused the client certificate's role (or the certificate itself)."""


class TalosAlreadyBootstrappedError(TalosApiError):
    """Bootstrap refused because etcd already has data on this node: bootstrapping is done."""


class TalosNotReadyError(TalosApiError):
    """The node is not in a state to do this yet (FAILED_PRECONDITION): retry later."""


class TalosReplyError(TalosApiError):
    """The call returned, but the node reported an error inside the reply's metadata."""


_EXPLANATIONS: dict[str, tuple[type[TalosApiError], str]] = {
    "UNAVAILABLE": (
        TalosUnavailableError,
        (
            "apid is unreachable or refused the TLS handshake (is the node up and listening on "
            "TCP 50000, and is its certificate signed by this cluster's OS CA?)"
        ),
    ),
    "DEADLINE_EXCEEDED": (TalosTimeoutError, "no answer before the call's deadline"),
    "PERMISSION_DENIED": (
        TalosPermissionError,
        "the client certificate's role is not allowed to make this call (Talos wants O=os:admin)",
    ),
    "UNAUTHENTICATED": (TalosPermissionError, "the node did not accept the client certificate"),
    "FAILED_PRECONDITION": (TalosNotReadyError, "the node is not ready for this call yet"),
    "UNIMPLEMENTED": (TalosApiError, "this node's Talos version does not implement the call"),
    "INVALID_ARGUMENT": (TalosApiError, "the node rejected the request's fields"),
    "CANCELLED": (TalosApiError, "the call was cancelled"),
}


def map_status(method: str, endpoint: str, code: str, details: str) -> TalosApiError:
    """The error to raise for a failed call of ``method`` with gRPC status ``code``."""
    if code == "ALREADY_EXISTS" and method == "Bootstrap":
        return TalosAlreadyBootstrappedError(
            method, endpoint, code, details, "etcd is already bootstrapped on this node"
        )
    cls, explanation = _EXPLANATIONS.get(code, (TalosApiError, "the call failed"))
    return cls(method, endpoint, code, details, explanation)
