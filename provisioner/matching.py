"""Pure matching: request labels (MAC, SMBIOS UUID, serial) to one inventory machine.

Theory of operation
-------------------
The matcher runs several times per boot (DHCP, the iPXE script, the config fetch), so it
has no side effects and answers the same way each time. Labels are normalised at the
boundary; an unparseable label is ignored, never fatal.

Precedence, most specific first:
1. SMBIOS UUID: survives NIC swaps, and Talos, dmidecode and the BMC all report it.
2. MAC: any of the machine's NICs.
3. Serial: weakest (vendors ship blank or repeated serials), used only when it is unique.

If the UUID and the MAC name different machines, the UUID wins: a NIC moved between
chassis is more common than two chassis sharing a UUID. Ties cannot occur because the
inventory validator refuses duplicate MACs, UUIDs and names; should the index still hold
two candidates, the alphabetically first name wins so the answer is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.model import MachineSummary, normalize_mac, normalize_uuid

__all__ = ["MachineIndex", "RequestLabels", "labels_from_raw"]


@dataclass(frozen=True, slots=True)
class RequestLabels:
    """What a boot request told us about the asking machine, already normalised."""

    mac: str | None = None
    uuid: str | None = None
    serial: str | None = None
    arch: str | None = None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def labels_from_raw(
    mac: str | None = None,
    uuid: str | None = None,
    serial: str | None = None,
    arch: str | None = None,
) -> RequestLabels:
    """Normalise raw label strings; anything unparseable is dropped, never raised."""
    norm_mac: str | None = None
    norm_uuid: str | None = None
    if (raw := _clean(mac)) is not None:
        try:
            norm_mac = normalize_mac(raw)
        except ValueError:
            norm_mac = None
    if (raw := _clean(uuid)) is not None:
        try:
            norm_uuid = normalize_uuid(raw)
        except ValueError:
            norm_uuid = None
    return RequestLabels(mac=norm_mac, uuid=norm_uuid, serial=_clean(serial), arch=_clean(arch))


class MachineIndex:
    """An immutable lookup structure over the inventory's machines."""

    __slots__ = ("_by_mac", "_by_name", "_by_serial", "_by_uuid")

    def __init__(self, machines: list[MachineSummary] | tuple[MachineSummary, ...]) -> None:
        ordered = sorted(machines, key=lambda m: m.name)
        self._by_name: dict[str, MachineSummary] = {}
        self._by_mac: dict[str, MachineSummary] = {}
        self._by_uuid: dict[str, MachineSummary] = {}
        serials: dict[str, list[MachineSummary]] = {}
        for machine in ordered:
            self._by_name.setdefault(machine.name, machine)
            for mac in machine.macs:
                self._by_mac.setdefault(mac, machine)
            if machine.uuid:
                self._by_uuid.setdefault(machine.uuid, machine)
            if machine.serial:
                serials.setdefault(machine.serial, []).append(machine)
        # A serial shared by several machines identifies none of them.
        self._by_serial = {s: ms[0] for s, ms in serials.items() if len(ms) == 1}

    def __len__(self) -> int:
        return len(self._by_name)

    def by_name(self, name: str) -> MachineSummary | None:
        """The machine called `name`, if any."""
        return self._by_name.get(name)

    def by_mac(self, mac: str) -> MachineSummary | None:
        """The machine owning the (normalised) MAC, if any."""
        return self._by_mac.get(mac)

    def all(self) -> list[MachineSummary]:
        """Every machine, sorted by name."""
        return list(self._by_name.values())

    def match(self, labels: RequestLabels) -> MachineSummary | None:
        """Return the one machine these labels name, or None (see module docstring)."""
        if labels.uuid is not None and (hit := self._by_uuid.get(labels.uuid)) is not None:
            return hit
        if labels.mac is not None and (hit := self._by_mac.get(labels.mac)) is not None:
            return hit
        if labels.serial is not None:
            return self._by_serial.get(labels.serial)
        return None
