"""IPMI 2.0 (RMCP+) power driver over pyghmi.

Each operation opens a fresh pyghmi session, sends one or two chassis commands
(`ipmi_codec`) and logs out, all inside one worker thread run by `BlockingCalls` (per-BMC
lock, global cap, deadline). A session per call costs about four extra round trips
(~1-5 ms on a LAN, measured against ipmi_sim and a pyghmi BMC) and avoids keepalive
threads, stale sessions after a BMC reboot and pyghmi's session-cache bugs (see
`ipmi_session`). The password is revealed only inside the worker thread.

pyghmi's own limits bound an orphaned thread: an unanswered login gives up after ~5 s;
an unanswered command is retried and re-logged-in for up to roughly 2x
`_getmaxtimeout()` (~40 s with defaults) before pyghmi returns a timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pyghmi import exceptions as pyghmi_exceptions

from provisioner.power.base import (
    BmcAuthFailed,
    BmcCredentials,
    BmcInsecure,
    BmcProtocolError,
    BmcTimeout,
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    PowerError,
    PowerState,
)
from provisioner.power.calls import BlockingCalls
from provisioner.power.ipmi_codec import (
    CHASSIS_NETFN,
    CMD_CHASSIS_CONTROL,
    CMD_GET_CHASSIS_STATUS,
    CMD_SET_BOOT_OPTIONS,
    ChassisControl,
    CompletionKind,
    boot_flags_request,
    boot_valid_bit_request,
    classify_completion,
    parse_chassis_status,
)
from provisioner.power.ipmi_session import REFUSED_PREFIX, PolicySession

__all__ = ["DEFAULT_IPMI_PORT", "IpmiDriver", "login_error"]

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_IPMI_PORT = 623
_NO_ANSWER = 0xFFFF  # pyghmi's pseudo completion code for "retries exhausted"

_CHECK_NETWORK = (
    "check the address and UDP port, that IPMI over LAN is enabled on the BMC, "
    "and that no firewall drops UDP 623"
)
_CHECK_PASSWORD = "check the BMC user's password in the inventory"  # noqa: S105 - a hint, not a password
_CHECK_USER = "check the user name and that the user is enabled for IPMI over LAN"
_CHECK_PRIVILEGE = "the BMC user needs the operator or administrator privilege"
_CHECK_TOOL = "compare with `ipmitool -I lanplus -C 3 ... chassis power status`; see docs/power.md"
_CHECK_CIPHERS = "enable cipher suite 17 or 3 and IPMI 2.0 on the BMC; suite 0 and IPMI 1.5 are refused"


def login_error(label: str, message: str | None, waited_s: float | None = None) -> PowerError:  # noqa: PLR0911 - one return per pyghmi message family
    """Turn a pyghmi login failure message into one of our errors.

    `waited_s`: how long the login ran, so "no answer" says for how long (pyghmi's own
    login budget is about 5 s, shorter than a typical `[power] timeout_s`).
    """
    text = message or ""
    lowered = text.lower()
    if not text or lowered == "timeout":
        waited = "" if waited_s is None else f" within {waited_s:.1f} s"
        return BmcUnreachable(label, f"no answer to IPMI session setup{waited}", _CHECK_NETWORK)
    if text.startswith(REFUSED_PREFIX):
        return BmcInsecure(label, text, _CHECK_CIPHERS)
    if "incorrect password" in lowered:
        return BmcAuthFailed(label, "password rejected (RAKP2 check failed)", _CHECK_PASSWORD)
    if "wrong kg" in lowered:
        return BmcAuthFailed(label, "BMC key (Kg) mismatch", "clear or set the BMC's Kg key")
    if "unauthorized name" in lowered or "username length" in lowered:
        return BmcAuthFailed(label, "user name not accepted by the BMC", _CHECK_USER)
    if "role" in lowered or "privilege" in lowered or "privelege" in lowered:
        return BmcAuthFailed(label, "privilege level refused", _CHECK_PRIVILEGE)
    if "cipher suite match" in lowered or "algorithm" in lowered:
        return BmcUnsupported(label, f"no common cipher suite ({text})", _CHECK_CIPHERS)
    if "insufficient resources" in lowered:
        return BmcProtocolError(
            label,
            "BMC has no free session slots",
            "wait for old sessions to expire",
            transient=True,
        )
    if "unable to transmit" in lowered:
        return BmcUnreachable(label, "cannot send to this address", "check the BMC address")
    return BmcProtocolError(label, f"session setup failed: {text}", _CHECK_TOOL)


class IpmiDriver:
    """`PowerDriver` for IPMI 2.0 BMCs (see the module doc for the session policy)."""

    def __init__(self, credentials: BmcCredentials, calls: BlockingCalls) -> None:
        """Bind to one BMC; `calls` is shared by every driver of the service."""
        self._creds = credentials
        self._calls = calls
        self._port = credentials.port or DEFAULT_IPMI_PORT
        self.last_cipher_suite: int | None = None

    @property
    def credentials(self) -> BmcCredentials:
        """The BMC this driver talks to."""
        return self._creds

    @property
    def _label(self) -> str:
        return f"ipmi {self._creds.address}:{self._port}"

    async def status(self) -> PowerState:
        """Get Chassis Status. See `PowerDriver.status`."""
        data = await self._run(lambda s: self._command(s, CMD_GET_CHASSIS_STATUS))
        try:
            return PowerState.ON if parse_chassis_status(data) else PowerState.OFF
        except ValueError as err:
            raise BmcProtocolError(self._label, str(err)) from None

    async def on(self) -> None:
        """Chassis Control: power up."""
        await self._control(ChassisControl.POWER_UP)

    async def off(self) -> None:
        """Chassis Control: power down (hard)."""
        await self._control(ChassisControl.POWER_DOWN)

    async def soft_off(self) -> None:
        """Chassis Control: soft shutdown via ACPI."""
        await self._control(ChassisControl.SOFT_SHUTDOWN)

    async def reset(self) -> None:
        """Chassis Control: hard reset."""
        await self._control(ChassisControl.HARD_RESET)

    async def cycle(self) -> None:
        """Chassis Control: power cycle."""
        await self._control(ChassisControl.POWER_CYCLE)

    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = True
    ) -> None:
        """Set System Boot Options: keep-valid-bit (param 3), then boot flags (param 5)."""
        flags = boot_flags_request(pxe=device is BootDevice.PXE, persistent=persistent, efi=uefi)

        def op(session: Any) -> None:  # noqa: ANN401
            self._command(session, CMD_SET_BOOT_OPTIONS, boot_valid_bit_request())
            self._command(session, CMD_SET_BOOT_OPTIONS, flags)

        await self._run(op)

    async def _control(self, action: ChassisControl) -> None:
        await self._run(lambda s: self._command(s, CMD_CHASSIS_CONTROL, (int(action),)))

    async def _run(self, op: Callable[[Any], T]) -> T:
        key = f"ipmi:{self._creds.address}:{self._port}"
        return await self._calls.run(key, self._label, lambda: self._blocking(op))

    # ---- worker thread -----------------------------------------------------------

    def _blocking(self, op: Callable[[Any], T]) -> T:
        started = time.monotonic()
        try:
            session = PolicySession(
                self._creds.address,
                self._creds.username,
                self._creds.password.reveal(),
                port=self._port,
            )
        except pyghmi_exceptions.IpmiException as err:
            waited = time.monotonic() - started
            raise login_error(self._label, err.args[0] if err.args else None, waited) from None
        except (OSError, ValueError, TypeError) as err:
            raise BmcProtocolError(self._label, f"session setup failed: {type(err).__name__}") from None
        self.last_cipher_suite = session.negotiated_suite
        if session.negotiated_suite == 3:
            log.debug("%s: BMC chose cipher suite 3 (HMAC-SHA1)", self._label)
        try:
            return op(session)
        except pyghmi_exceptions.IpmiException as err:
            raise BmcTimeout(self._label, f"session lost during the call ({err})", _CHECK_NETWORK) from None
        finally:
            try:
                session.logout()
            except Exception:
                log.debug("%s: logout failed", self._label)

    def _command(self, session: Any, command: int, data: tuple[int, ...] = ()) -> bytes:  # noqa: ANN401
        response = session.raw_command(netfn=CHASSIS_NETFN, command=command, data=data)
        code = response.get("code", 0)
        if code == _NO_ANSWER or ("error" in response and not code):
            raise BmcTimeout(self._label, f"no answer to chassis command 0x{command:02x}", _CHECK_NETWORK)
        if code:
            kind, meaning = classify_completion(code)
            problem = f"chassis command 0x{command:02x} failed: {meaning}"
            if kind is CompletionKind.UNSUPPORTED:
                raise BmcUnsupported(self._label, problem, "the BMC does not support this")
            if kind is CompletionKind.PRIVILEGE:
                raise BmcAuthFailed(self._label, problem, _CHECK_PRIVILEGE)
            raise BmcProtocolError(
                self._label, problem, "retry later", transient=kind is CompletionKind.TRANSIENT
            )
        return bytes(response.get("data", b""))
