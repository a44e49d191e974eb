"""Who a lease belongs to (the binding key), and the one lease-upsert rule built on it.

Theory of operation
-------------------
RFC 2131 §4.2 and RFC 6842 §3: a server identifies a client by its client identifier
(option 61) when the client sends one, else by `chaddr`; two clients on one NIC (say, a
dual-boot OS and a container runtime) with different client identifiers are different
clients and get different leases. That stays the rule for clients not in the inventory.

One inventory machine, however, speaks DHCP with several client identities during one
boot: UEFI firmware PXE (edk2/OVMF) sends no option 61, iPXE sends `01` + MAC, and the
installed OS its own (busybox udhcpc `01` + MAC, dhclient/systemd-networkd an RFC 4361
IAID+DUID). Keyed by option 61, each stage was a stranger to the one before, so the
reserved address held by iPXE or the OS was "taken" for the firmware's next DISCOVER:
the firmware got a pool address, or nothing on a reservation-only subnet. For a machine
the inventory recognises (by SMBIOS UUID or MAC, `provisioner.matching`), the binding
is therefore keyed by its hardware address alone: a lease of the same MAC under another
client identifier is the same binding, not a conflict. A second NIC of the machine has
another MAC and stays another binding, so two live NICs never share one address.

The key is a MAC (`aa:bb:..`, with colons) or a client identifier in hex (no colons):
the two spellings cannot collide.

`LEASE_UPSERT_WHERE` is the same rule in SQL, shared by `SqlLeaseStore` (SQLite and
PostgreSQL through SQLAlchemy) and the SQLite writer thread, so the database applies
exactly the rule the in-memory book does (`MemoryLeaseStore` uses `binding_key`).
"""

from __future__ import annotations

__all__ = ["LEASE_UPSERT_WHERE", "binding_key"]

# Lease states that no longer keep an address from anyone (book.LeaseState values).
_FREE_STATES = "'released', 'expired', 'offered'"


def binding_key(mac: str, client_id: str, machine: str | None) -> str:
    """The identity owning a lease: the MAC for an inventory machine, else RFC 2131 §4.2."""
    if machine is not None:
        return mac
    return client_id or mac


def _key_sql(table: str) -> str:
    return (
        f"(CASE WHEN {table}.machine IS NOT NULL THEN {table}.mac"
        f" WHEN {table}.client_id != '' THEN {table}.client_id ELSE {table}.mac END)"
    )


LEASE_UPSERT_WHERE = (
    # The row belongs to the same binding (`binding_key` in SQL) ...
    f"{_key_sql('lease')} = {_key_sql('excluded')}"
    # ... or it no longer keeps the address from anyone.
    f" OR lease.state IN ({_FREE_STATES})"
    " OR lease.expires_at <= excluded.updated_at"
)
"""The WHERE of `INSERT INTO lease ... ON CONFLICT (ip) DO UPDATE SET ...` (SQLite, PostgreSQL)."""
