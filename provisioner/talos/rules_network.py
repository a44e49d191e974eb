"""Talos's network device rules (``Config.Validate`` network part, ``CheckDevice*``), Talos's messages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from provisioner.talos.rulehelpers import Doc, get, is_subnet_or_address, machine_type_of

__all__ = ["network_devices", "vip_on_worker"]


def vip_on_worker(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    """Config.Validate: no VIP on a worker."""
    if machine_type_of(main) != "worker":
        return
    for device in get(main, "machine", "network", "interfaces") or []:
        vlans = get(device, "vlans") or []
        if get(device, "vip") or any(get(vlan, "vip") for vlan in vlans):
            yield "machine.network: virtual (shared) IP is not allowed on non-controlplane nodes"


def _device_problems(device: Mapping[str, Any], secondary: Mapping[str, str]) -> Iterator[str]:
    name = device.get("interface", "")
    if not name and not device.get("deviceSelector"):
        yield (
            "[networking.os.device.interface], [networking.os.device.deviceSelector]: "
            "required either config section to be set"
        )
    elif name and device.get("deviceSelector"):
        yield (
            "[networking.os.device.interface], [networking.os.device.deviceSelector]: "
            "config sections are mutually exclusive"
        )
    addresses = device.get("addresses") or []
    if name in secondary and (device.get("dhcp") or device.get("cidr") or addresses or device.get("vip")):
        yield (
            f'[networking.os.device] "{name}": '
            "bonded/bridged interface shouldn't have any addressing methods configured"
        )
    if addresses and device.get("cidr"):
        yield f'[networking.os.device] "{name}": interface can\'t have both .cidr and .addresses set'
    for address in addresses:
        if not is_subnet_or_address(str(address)):
            yield f'[networking.os.device.addresses] "{name}": failed to parse IP address "{address}"'
    for index, route in enumerate(device.get("routes") or []):
        network, gateway = route.get("network", ""), route.get("gateway", "")
        where = f"networking.os.device.route[{index}]"
        if network and ("/" not in str(network) or not is_subnet_or_address(str(network))):
            yield f'[{where}.network] "{network}": invalid network address'
        if gateway and ("/" in str(gateway) or not is_subnet_or_address(str(gateway))):
            yield f'[{where}.gateway] "{gateway}": invalid network address'
        if not gateway and not network:
            yield f"[{where}]: either network or gateway should be set"
    vip = get(device, "vip", "ip")
    if device.get("vip") is not None and ("/" in str(vip) or not is_subnet_or_address(str(vip or ""))):
        yield f'[networking.os.device.vip] failed to parse "{vip or ""}" as IP address'


def network_devices(main: Doc, _docs: list[Doc], _mode: str) -> Iterator[str]:
    """Config.Validate network part: bond/bridge membership, then CheckDevice* per device."""
    devices = [d for d in get(main, "machine", "network", "interfaces") or [] if isinstance(d, Mapping)]
    secondary: dict[str, str] = {}
    for device in devices:
        name = device.get("interface", "")
        if device.get("bond") is not None and device.get("bridge") is not None:
            yield (
                f'machine.network: interface has both bridge and bond sections set "{name}": '
                "config sections are mutually exclusive"
            )
        bond = device.get("bond") or {}
        if bond.get("interfaces") and bond.get("deviceSelectors"):
            yield (
                f'machine.network: interface "{name}" has both interfaces and selectors set: '
                "config sections are mutually exclusive"
            )
        members = bond.get("interfaces") or get(device, "bridge", "interfaces") or []
        for member in members:
            if (other := secondary.get(member)) is not None and other != name:
                yield (
                    f'machine.network: interface "{member}" is declared as part of two separate links: '
                    f'"{other}" and "{name}"'
                )
            secondary[member] = name
    for device in devices:
        if not device.get("ignore"):
            yield from (f"machine.network: {problem}" for problem in _device_problems(device, secondary))
