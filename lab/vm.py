"""QEMU for one lab VM: its command line (pure) and a tiny QMP client.

Under TCG (KVM is unusable on these hosts, see docs/testing.md), 256 MiB, no display, serial to a
file that is appended to across power cycles, QMP on a unix socket, a pid file so that
``lab down`` finds the process even if the BMC that started it was killed.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.machines import Machine

__all__ = [
    "FIRMWARES",
    "OVMF_CODE",
    "OVMF_VARS",
    "QmpError",
    "VmFiles",
    "qemu_argv",
    "qmp_command",
]

FIRMWARES = ("bios", "uefi", "uefi-pxe")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
MEMORY_MIB = 256


class QmpError(RuntimeError):
    """QMP refused a command or the socket failed."""


@dataclass(frozen=True)
class VmFiles:
    """Where one VM's runtime files live (all under the lab state directory)."""

    serial_log: Path
    qmp_socket: Path
    pid_file: Path
    ovmf_vars: Path

    @classmethod
    def under(cls, directory: Path, name: str) -> VmFiles:
        """Return the file set for VM ``name`` inside ``directory``."""
        return cls(
            serial_log=directory / f"{name}.serial.log",
            qmp_socket=directory / f"{name}.qmp",
            pid_file=directory / f"{name}.pid",
            ovmf_vars=directory / f"{name}.OVMF_VARS.fd",
        )


def qemu_argv(
    machine: Machine,
    files: VmFiles,
    firmware: str,
    *,
    boot: str = "order=n",
    memory_mib: int = MEMORY_MIB,
) -> list[str]:
    """Return the QEMU command line for ``machine``.

    ``bios``: SeaBIOS and QEMU's iPXE option ROM. ``uefi``: OVMF (VARS copied per VM by
    the caller to ``files.ovmf_vars``) and the iPXE EFI ROM. ``uefi-pxe``: OVMF with the
    NIC ROM disabled, so the firmware's own PXE client runs (then TFTP an iPXE binary).
    """
    if firmware not in FIRMWARES:
        msg = f"firmware must be one of {FIRMWARES}, not {firmware!r}"
        raise ValueError(msg)
    nic = f"virtio-net-pci,netdev=net0,mac={machine.mac}"
    if firmware == "uefi-pxe":
        nic += ",romfile="
    argv = [
        "qemu-system-x86_64",
        "-name", f"{machine.name},process=qemu-{machine.name}",
        "-accel", "tcg",
        "-m", str(memory_mib),
        "-smp", "1",
        "-nographic",
        "-nodefaults",
        "-chardev", f"file,id=serial0,path={files.serial_log},append=on",
        "-serial", "chardev:serial0",
        "-uuid", machine.uuid,
        "-smbios", f"type=1,serial={machine.serial},product=lab-vm,manufacturer=provisioner-lab",
        # vnet_hdr=off: UDP the host sends over the bridge (the provisioner's DHCP answers)
        # leaves with a partial, offloaded checksum; with vnet headers QEMU passes it on
        # as is, and firmware that verifies UDP checksums (iPXE) drops the packet. Without
        # them the kernel completes the checksum before QEMU reads the frame.
        "-netdev", f"tap,id=net0,ifname={machine.tap},script=no,downscript=no,vnet_hdr=off",
        "-device", nic,
        "-boot", boot,
        "-qmp", f"unix:{files.qmp_socket},server=on,wait=off",
        "-pidfile", str(files.pid_file),
    ]  # fmt: skip
    if firmware != "bios":
        argv += [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={files.ovmf_vars}",
        ]  # fmt: skip
    return argv


def _read_message(stream: Any) -> dict[str, Any]:  # noqa: ANN401
    """Read one QMP message that is not an asynchronous event."""
    while True:
        line = stream.readline()
        if not line:
            msg = "QMP socket closed"
            raise QmpError(msg)
        message: dict[str, Any] = json.loads(line)
        if "event" not in message:
            return message


def qmp_command(qmp_socket: Path, command: str, timeout: float = 5.0) -> dict[str, Any]:
    """Run one QMP ``command`` (no arguments) on a VM and return its ``return`` value."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(qmp_socket))
        except OSError as exc:
            msg = f"cannot reach QMP at {qmp_socket}: {exc}"
            raise QmpError(msg) from exc
        stream = sock.makefile("rw", encoding="utf-8")
        _read_message(stream)  # greeting
        for name in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": name}) + "\n")
            stream.flush()
            answer = _read_message(stream)
            if "error" in answer:
                msg = f"QMP {name}: {answer['error']}"
                raise QmpError(msg)
        result: dict[str, Any] = answer.get("return", {})
        return result
