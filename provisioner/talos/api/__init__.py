"""Talos API client: mutual-TLS gRPC to apid with stubs generated from Talos's protos."""

from provisioner.talos.api.client import TalosApiSettings, TalosClient
from provisioner.talos.api.credentials import AdminCredentials
from provisioner.talos.api.decode import EtcdMember, KubeconfigError, NodeVersion, ServiceStatus
from provisioner.talos.api.errors import (
    TalosAlreadyBootstrappedError,
    TalosApiError,
    TalosNotReadyError,
    TalosPermissionError,
    TalosReplyError,
    TalosTimeoutError,
    TalosUnavailableError,
)

__all__ = [
    "AdminCredentials",
    "EtcdMember",
    "KubeconfigError",
    "NodeVersion",
    "ServiceStatus",
    "TalosAlreadyBootstrappedError",
    "TalosApiError",
    "TalosApiSettings",
    "TalosClient",
    "TalosNotReadyError",
    "TalosPermissionError",
    "TalosReplyError",
    "TalosTimeoutError",
    "TalosUnavailableError",
]
