"""Short-lived ``os:admin`` client credentials for the Talos API.

The certificate is the one ``cluster talosconfig`` writes
(:func:`provisioner.talos.talosconfig.admin_certificate`: Ed25519, ``O=os:admin``, client
auth, signed by the cluster's OS CA) but valid for an hour instead of a year: the
provisioner mints a fresh one whenever the current one nears its end, so a leaked key is
worth little.  The server is verified against the OS CA and the address dialled, as
talosctl does (Talos ``pkg/machinery/client/connection.go`` puts the CA in ``RootCAs`` and
the resolver sets ``ServerName`` to the endpoint's host; node certificates carry the
node's IP addresses as SANs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from provisioner.talos.pki import CertAndKey, load_cert
from provisioner.talos.talosconfig import admin_certificate

__all__ = ["CLIENT_CERT_BACKDATE", "CLIENT_CERT_LIFETIME", "AdminCredentials"]

CLIENT_CERT_LIFETIME = timedelta(hours=1)
# A node that has just booted may not have synced its clock yet; five minutes of NotBefore
# slack keeps a slightly slow node from seeing a certificate from the future.
CLIENT_CERT_BACKDATE = timedelta(minutes=5)
# Re-mint when less than this much validity is left, so no call starts on a dying cert.
_RENEW_BEFORE_FRACTION = 4


@dataclass(frozen=True, slots=True)
class AdminCredentials:
    """The OS CA (to verify nodes) and an admin client certificate with its expiry."""

    ca_crt: bytes
    client: CertAndKey
    not_after: datetime
    lifetime: timedelta

    @classmethod
    def issue(
        cls, os_ca: CertAndKey, now: datetime, lifetime: timedelta = CLIENT_CERT_LIFETIME
    ) -> AdminCredentials:
        """Mint a fresh admin certificate valid from ``now`` for ``lifetime``."""
        client = admin_certificate(os_ca, now, lifetime, backdate=CLIENT_CERT_BACKDATE)
        not_after = load_cert(client.crt).not_valid_after_utc
        return cls(ca_crt=os_ca.crt, client=client, not_after=not_after, lifetime=lifetime)

    def needs_renewal(self, now: datetime) -> bool:
        """True when the last quarter of the certificate's life has begun."""
        return now >= self.not_after - self.lifetime / _RENEW_BEFORE_FRACTION

    def renewed(self, os_ca: CertAndKey, now: datetime) -> AdminCredentials:
        """These credentials, or fresh ones if they are near their end."""
        return AdminCredentials.issue(os_ca, now, self.lifetime) if self.needs_renewal(now) else self
