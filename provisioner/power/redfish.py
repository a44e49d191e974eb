"""Redfish power driver over sushy (blocking, so it shares `BlockingCalls` with IPMI).

Each operation builds a short-lived `sushy.Sushy` client with HTTP Basic auth (no
Redfish session is created, so none is leaked), finds the ComputerSystem and acts on it:

| method            | Redfish                                                      |
|-------------------|--------------------------------------------------------------|
| status            | `PowerState` (On/Off; transitional states read as UNKNOWN)   |
| on / off          | `ComputerSystem.Reset` `On` / `ForceOff`                      |
| soft_off          | `GracefulShutdown`                                           |
| reset             | `ForceRestart`                                               |
| cycle             | `PowerCycle` when the BMC lists it, else `BmcUnsupported`     |
| set_boot_device   | PATCH `Boot`: target `Pxe`/`Hdd`, `Once`/`Continuous`, `UEFI`/`Legacy` |

Options (`BmcCredentials.options`): `system` (id or `/redfish/v1/Systems/...` path;
default: the only system), `scheme` (`https`, or `http` for emulators), `verify_tls`
(default true). sushy's own timeouts are set to the call deadline so an orphaned thread
ends soon after it, and its server-side retries are turned off (the service retries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exc

from provisioner.power.base import (
    BmcAuthFailed,
    BmcCredentials,
    BmcProtocolError,
    BmcTimeout,
    BmcUnreachable,
    BmcUnsupported,
    BootDevice,
    PowerError,
    PowerState,
)
from provisioner.power.calls import BlockingCalls

__all__ = ["RedfishDriver", "redfish_error"]

T = TypeVar("T")
_SYSTEMS = "/redfish/v1/Systems/"
_CHECK_NETWORK = "check the address, port and scheme, and that the BMC's Redfish service is on"


def redfish_error(label: str, err: Exception) -> PowerError:  # noqa: PLR0911 - one return per sushy exception family
    """Map a sushy exception to one of our errors (messages never carry credentials)."""
    if isinstance(err, sushy_exc.AccessError):
        return BmcAuthFailed(
            label,
            "Redfish refused the credentials (HTTP 401/403)",
            "check the user name, password and the user's role on the BMC",
        )
    if isinstance(err, sushy_exc.ResourceNotFoundError):
        return BmcProtocolError(
            label,
            "Redfish resource not found",
            "check options.system names an existing system",
            check=("bmc.options.system",),
        )
    if isinstance(err, sushy_exc.ServerSideError):
        return BmcProtocolError(label, "BMC internal error (HTTP 5xx)", "retry later", transient=True)
    if isinstance(
        err,
        sushy_exc.InvalidParameterValueError | sushy_exc.MissingActionError | sushy_exc.MissingAttributeError,
    ):
        return BmcUnsupported(label, f"not offered by this BMC: {err}", "see the BMC's Redfish schema")
    if isinstance(err, sushy_exc.UnknownDefaultError):
        return BmcProtocolError(
            label,
            "the BMC lists several systems",
            "set options.system to the one to control",
            check=("bmc.options.system",),
        )
    if isinstance(err, sushy_exc.ConnectionError):
        text = str(err).lower()
        if "timed out" in text and "connect" not in text:
            return BmcTimeout(label, "Redfish request timed out", "the BMC may be overloaded")
        return BmcUnreachable(
            label,
            f"cannot connect to the Redfish service ({_connect_cause(text)})",
            _CHECK_NETWORK,
            check=("bmc.address", "bmc.port", "bmc.options.scheme"),
        )
    if isinstance(err, sushy_exc.BadRequestError):
        return BmcUnsupported(label, "BMC rejected the request (HTTP 400)", "see the BMC's logs")
    return BmcProtocolError(
        label, f"Redfish error: {type(err).__name__}", "compare with curl -u USER <url>/redfish/v1/Systems"
    )


def _connect_cause(text: str) -> str:
    """The operator's words for a requests/urllib3 connect failure (no URL, no user)."""
    for marker, cause in (
        ("connection refused", "connection refused: nothing listens on this port"),
        ("timed out", "no answer to the TCP connect"),
        ("name or service not known", "the address does not resolve"),
        ("no route to host", "no route to host"),
        ("network is unreachable", "network unreachable"),
        ("certificate verify failed", "TLS certificate not trusted; see options.verify_tls"),
        ("ssl", "TLS handshake failed; check options.scheme"),
    ):
        if marker in text:
            return cause
    return "connection failed"


def _enum_text(value: object) -> str:
    """Sushy returns str-valued enums (or None); we want the Redfish string."""
    return str(getattr(value, "value", value) or "")


class RedfishDriver:
    """`PowerDriver` for Redfish BMCs (see the module doc)."""

    def __init__(self, credentials: BmcCredentials, calls: BlockingCalls) -> None:
        """Bind to one BMC; `calls` is shared by every driver of the service."""
        self._creds = credentials
        self._calls = calls
        opts = credentials.options
        self._scheme = str(opts.get("scheme", "https"))
        self._verify = bool(opts.get("verify_tls", True))
        system = opts.get("system")
        self._system = None if system in (None, "") else str(system)
        if self._system is not None and not self._system.startswith("/"):
            self._system = _SYSTEMS + self._system
        port = credentials.port or (443 if self._scheme == "https" else 80)
        self._base_url = f"{self._scheme}://{credentials.address}:{port}"
        self._label = f"redfish {credentials.address}:{port}"

    @property
    def credentials(self) -> BmcCredentials:
        """The BMC this driver talks to."""
        return self._creds

    async def status(self) -> PowerState:
        """Read `PowerState`. See `PowerDriver.status`."""
        value = await self._run(lambda system: _enum_text(system.power_state))
        return {"on": PowerState.ON, "off": PowerState.OFF}.get(value.lower(), PowerState.UNKNOWN)

    async def on(self) -> None:
        """Reset action `On`."""
        await self._reset(sushy.RESET_ON)

    async def off(self) -> None:
        """Reset action `ForceOff`."""
        await self._reset(sushy.RESET_FORCE_OFF)

    async def soft_off(self) -> None:
        """Reset action `GracefulShutdown`."""
        await self._reset(sushy.RESET_GRACEFUL_SHUTDOWN)

    async def reset(self) -> None:
        """Reset action `ForceRestart`."""
        await self._reset(sushy.RESET_FORCE_RESTART)

    async def cycle(self) -> None:
        """Reset action `PowerCycle`; `BmcUnsupported` when the BMC does not list it."""
        await self._reset(sushy.RESET_TYPE_POWER_CYCLE)

    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = True
    ) -> None:
        """PATCH the boot override. See `PowerDriver.set_boot_device`."""
        target = sushy.BOOT_SOURCE_TARGET_PXE if device is BootDevice.PXE else sushy.BOOT_SOURCE_TARGET_HDD
        enabled = sushy.BOOT_SOURCE_ENABLED_CONTINUOUS if persistent else sushy.BOOT_SOURCE_ENABLED_ONCE
        mode = sushy.BOOT_SOURCE_MODE_UEFI if uefi else sushy.BOOT_SOURCE_MODE_BIOS
        await self._run(
            lambda system: system.set_system_boot_options(target=target, enabled=enabled, mode=mode)
        )

    async def _reset(self, value: Any) -> None:  # noqa: ANN401
        def op(system: Any) -> None:  # noqa: ANN401
            if value not in system.get_allowed_reset_system_values():
                raise BmcUnsupported(
                    self._label,
                    f"reset type {_enum_text(value)} is not offered by this BMC",
                    "use reset or off/on instead" if value == sushy.RESET_TYPE_POWER_CYCLE else "",
                )
            system.reset_system(value)

        await self._run(op)

    async def _run(self, op: Callable[[Any], T]) -> T:
        key = f"redfish:{self._base_url}"
        return await self._calls.run(key, self._label, lambda: self._blocking(op))

    def _blocking(self, op: Callable[[Any], T]) -> T:
        timeout = max(1.0, self._calls.timeout_s)
        try:
            root = sushy.Sushy(
                self._base_url,
                auth=sushy_auth.BasicAuth(self._creds.username, self._creds.password.reveal()),
                verify=self._verify,
                read_timeout=timeout,
                connect_timeout=timeout,
                server_side_retries=1,
                server_side_retries_delay=0,
            )
            return op(root.get_system(self._system))
        except PowerError:
            raise
        except sushy_exc.SushyError as err:
            raise redfish_error(self._label, err) from None
