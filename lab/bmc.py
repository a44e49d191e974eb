"""A virtual BMC per lab VM, built on pyghmi's IPMI server (``pyghmi.ipmi.bmc.Bmc``).

Power on starts the VM's QEMU process, power off stops it, soft off sends ACPI power-down
over QMP (``system_powerdown``), reset is QMP ``system_reset``, cycle is off then on.
The boot device (IPMI "Set System Boot Options" parameter 5) is remembered with its
persistent/once flag and becomes QEMU's ``-boot`` at the next power on (``once=`` for a
one-time override, which QEMU itself drops after the first boot, as firmware does).

Cipher fix (the snag in docs/testing.md): pyghmi's server forces cipher suite 3 (HMAC-SHA1, HMAC-SHA1-96,
AES-CBC-128) whatever the client proposed, so a client proposing SHA-256 (pyghmi's own
client does, first) gets a SHA-1 RAKP2 and fails. ``LabServerSession`` instead answers a
proposal it does not support with RMCP+ status 0x11 "no cipher suite match" (IPMI 2.0
§13.17, Table 13-15): pyghmi then retries with suite 3, and ipmitool, which picks the suite
from the BMC's "Get Channel Cipher Suites" list (suite 3 only), proposes it from the start.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import serversession

from lab.vm import MEMORY_MIB, OVMF_VARS, QmpError, VmFiles, qemu_argv, qmp_command

if TYPE_CHECKING:
    from pathlib import Path

    from lab.machines import Machine

__all__ = ["LabBmc", "LabServerSession", "VmSettings", "boot_argument"]

_SUITE3 = (1, 1, 1)  # RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128 (IPMI 2.0 Table 22-20)
_NO_CIPHER_MATCH = 0x11
_PARAM_BOOT_FLAGS = 5
_FLAG_VALID = 0x80
_FLAG_PERSISTENT = 0x40
_CC_NOT_IN_STATE = 0xD5  # IPMI 2.0 Table 5-2: not supported in present state
_STOP_WAIT_S = 5.0


@dataclass(frozen=True)
class VmSettings:
    """What every VM of a lab shares."""

    firmware: str = "bios"
    memory_mib: int = MEMORY_MIB


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def boot_argument(device: str, *, persistent: bool) -> str:
    """Return QEMU's ``-boot`` value for an IPMI boot device override.

    With no override the order is disk, then network (a real box with an empty disk falls
    through to PXE). A one-time override maps to ``once=``, which QEMU forgets on reset.
    """
    letter = {"network": "n", "hd": "c"}.get(device)
    if letter is None:
        return "order=cn"
    return f"order={letter}" if persistent else f"once={letter},order=cn"


class LabServerSession(serversession.ServerSession):  # type: ignore[misc]
    """pyghmi's server session, refusing cipher proposals it cannot honour."""

    def create_open_session_response(self, request: bytearray) -> bytearray:
        """Answer an RMCP+ Open Session Request (IPMI 2.0 §13.17)."""
        # Request layout: tag, role, 2 reserved, console session id (4), then three
        # 8-byte algorithm payloads whose 5th byte is the algorithm number.
        if len(request) < 32:
            return super().create_open_session_response(request)  # type: ignore[no-any-return]
        proposed = (request[12] & 0x3F, request[20] & 0x3F, request[28] & 0x3F)
        if proposed != _SUITE3:
            self.clientsessionid = request[4:8]
            return bytearray([request[0], _NO_CIPHER_MATCH, 0, 0]) + request[4:8]
        response: bytearray = super().create_open_session_response(request)
        return response


class LabBmc(pyghmi_bmc.Bmc):  # type: ignore[misc]
    """The BMC of one lab VM; QEMU processes it starts run in its own network namespace."""

    def __init__(
        self,
        machine: Machine,
        state_dir: Path,
        password: str,
        vm: VmSettings,
        address: str = "127.0.0.1",
    ) -> None:
        """Listen on ``address``:``machine.bmc_port`` for user ``admin``."""
        super().__init__(
            {"admin": password},
            port=machine.bmc_port,
            bmcuuid=uuid.UUID(machine.uuid),
            address=address,
        )
        self.machine = machine
        self.vm = vm
        self.files = VmFiles.under(state_dir, machine.name)
        self.qemu_log = state_dir / f"{machine.name}.qemu.log"
        self.boot_device = "default"
        self.boot_persistent = False
        self.process: subprocess.Popen[bytes] | None = None

    # -- identity ---------------------------------------------------------------------
    def get_system_guid(self) -> uuid.UUID:
        """Return the VM's SMBIOS UUID as the system GUID."""
        return uuid.UUID(self.machine.uuid)

    # -- power ------------------------------------------------------------------------
    def is_on(self) -> bool:
        """Tell whether the QEMU process is running."""
        if self.process is None:
            return False
        if self.process.poll() is None:
            return True
        self.process = None
        self.files.pid_file.unlink(missing_ok=True)
        return False

    def get_power_state(self) -> str:
        """Return "on" or "off" for Get Chassis Status."""
        return "on" if self.is_on() else "off"

    def power_on(self) -> int:
        """Start QEMU (no-op when already on)."""
        if self.is_on():
            return 0
        if self.vm.firmware != "bios" and not self.files.ovmf_vars.exists():
            shutil.copyfile(OVMF_VARS, self.files.ovmf_vars)
        boot = boot_argument(self.boot_device, persistent=self.boot_persistent)
        argv = qemu_argv(self.machine, self.files, self.vm.firmware, boot=boot, memory_mib=self.vm.memory_mib)
        if not self.boot_persistent:
            self.boot_device = "default"  # a one-time override is used up by this boot
        self._mark(f"power on {self.machine.name} at {_stamp()} boot {boot}")
        self.files.qmp_socket.unlink(missing_ok=True)
        self.files.pid_file.unlink(missing_ok=True)
        with self.qemu_log.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Do not wait for QEMU to open QMP here: every lab BMC shares one pyghmi server
        # loop, and a power-on that blocked for seconds made the other BMCs miss their
        # callers' deadlines (as no real BMC would). QMP users wait for it instead.
        return 0

    def _wait_qmp(self) -> bool:
        """Wait (bounded) until QEMU opened its QMP socket; False if it died or never did."""
        deadline = time.monotonic() + _STOP_WAIT_S
        while not self.files.qmp_socket.exists():
            if self.process is not None and self.process.poll() is not None:
                return False
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def power_off(self) -> int:
        """Stop QEMU at once (hard power off)."""
        process = self.process
        if process is None or not self.is_on():
            return 0
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.is_on()
        return 0

    def power_shutdown(self) -> int:
        """Soft off: ACPI power button via QMP; the guest decides."""
        return self._qmp("system_powerdown")

    def power_reset(self) -> int:
        """Hard reset via QMP."""
        code = self._qmp("system_reset")
        if code == 0:  # a new boot in the serial log (lab/markers.py splits boots here)
            self._mark(f"reset {self.machine.name} at {_stamp()}")
        return code

    def _mark(self, text: str) -> None:
        with self.files.serial_log.open("a", encoding="utf-8") as log:
            log.write(f"\n=== LAB-BMC: {text}\n")

    def power_cycle(self) -> int:
        """Power off (if on), then on."""
        self.power_off()
        return self.power_on()

    def _qmp(self, command: str) -> int:
        if not self.is_on():
            return _CC_NOT_IN_STATE
        if not self._wait_qmp():
            return 0xFF
        try:
            qmp_command(self.files.qmp_socket, command)
        except QmpError:
            return 0xFF
        return 0

    # -- boot device ------------------------------------------------------------------
    def get_boot_device(self) -> str:
        """Return the boot device override ("network", "hd", "default", ...)."""
        return self.boot_device

    def set_boot_device(self, bootdevice: str) -> None:
        """Remember the boot device override for the next power on."""
        self.boot_device = bootdevice

    def set_system_boot_options(self, request: dict[str, Any], session: Any) -> None:  # noqa: ANN401
        """Set System Boot Options; keeps the persistent flag of parameter 5."""
        data = request["data"]
        if data[0] == _PARAM_BOOT_FLAGS and len(data) > 2:
            self.boot_persistent = bool(data[1] & _FLAG_PERSISTENT)
        super().set_system_boot_options(request, session)

    def get_system_boot_options(self, request: dict[str, Any], session: Any) -> None:  # noqa: ANN401
        """Get System Boot Options parameter 5 with the persistent flag."""
        if request["data"][0] != _PARAM_BOOT_FLAGS:
            session.send_ipmi_response(code=0x80)
            return
        selector = {"network": 1, "hd": 2, "default": 0}.get(self.boot_device, 0)
        flags = _FLAG_VALID | (_FLAG_PERSISTENT if self.boot_persistent else 0)
        session.send_ipmi_response(data=[1, 5, flags, selector << 2, 0, 0, 0])

    # -- sessions ---------------------------------------------------------------------
    def sessionless_data(self, data: bytes, sockaddr: Any) -> None:  # noqa: ANN401
        """Route new RMCP+ sessions to ``LabServerSession``; the rest as pyghmi does."""
        raw = bytearray(data)
        is_open_request = (
            len(raw) >= 22 and raw[0] == 6 and raw[2:4] == b"\xff\x07" and raw[4] == 6 and raw[5] == 0x10
        )
        if is_open_request:
            LabServerSession(
                self.authdata, self.kg, sockaddr, self.serversocket, raw[16:], self.uuid, bmc=self
            )
            return
        super().sessionless_data(data, sockaddr)
