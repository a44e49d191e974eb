"""The admin ``talosconfig``: a talosctl client config with an ``os:admin`` certificate.

Same shape as ``talosctl gen config`` writes: one context named after the cluster, the
control-plane addresses as endpoints, and base64 PEM ``ca``/``crt``/``key``.  The client
certificate is Ed25519 (the OS CA is Ed25519), ``O=os:admin`` (Talos's admin role), client
auth only, valid one year from ``now``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime, timedelta

from provisioner.talos import goyaml
from provisioner.talos.pki import CertAndKey, LeafSpec, issue_leaf, subject_name

__all__ = ["ADMIN_ROLE", "CLIENT_CERT_VALIDITY", "admin_certificate", "generate_talosconfig"]

ADMIN_ROLE = "os:admin"
# Talos: TalosAPIDefaultCertificateValidityDuration = 24h * 365.
CLIENT_CERT_VALIDITY = timedelta(days=365)


def admin_certificate(
    os_ca: CertAndKey,
    now: datetime,
    validity: timedelta = CLIENT_CERT_VALIDITY,
    *,
    backdate: timedelta = timedelta(0),
) -> CertAndKey:
    """A Talos API client certificate with the admin role, signed by the OS CA.

    ``backdate`` moves NotBefore into the past for nodes whose clock runs behind ours.
    """
    spec = LeafSpec(
        subject=subject_name((ADMIN_ROLE,)), validity=validity, client_auth=True, backdate=backdate
    )
    return issue_leaf(os_ca, spec, now)


def generate_talosconfig(
    cluster_name: str,
    endpoints: Sequence[str],
    os_ca: CertAndKey,
    now: datetime,
    validity: timedelta = CLIENT_CERT_VALIDITY,
) -> str:
    """The talosconfig YAML for ``cluster_name`` with a fresh admin certificate."""
    client = admin_certificate(os_ca, now, validity)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    context = {
        "endpoints": list(endpoints),
        "ca": b64(os_ca.crt),
        "crt": b64(client.crt),
        "key": b64(client.key),
    }
    return goyaml.dump({"context": cluster_name, "contexts": {cluster_name: context}})
