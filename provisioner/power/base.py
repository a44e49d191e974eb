"""The power-driver contract: values, the `PowerDriver` protocol and its errors.

Every BMC back end (IPMI, Redfish, manual, fake) implements `PowerDriver`. A driver is
bound to one BMC (`BmcCredentials`) and is chosen by name in exactly one place,
`registry.make_driver` (one place chooses the driver, after sushy-tools' `AbstractSystemsDriver`).

Errors are one hierarchy rooted at `PowerError`. Every message names the BMC as
`driver address:port` and says what an operator should check; `check` lists the inventory
`bmc:` fields to look at and `reason` is the machine-readable name the API returns
(docs/power.md "Errors"). No message, repr or event ever holds the password: it lives in
a `Secret`, whose `str`/`repr` is `***`, and is only revealed inside the worker thread
that makes the call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "REASONS",
    "SUMMARIES",
    "BmcAuthFailed",
    "BmcCredentials",
    "BmcInsecure",
    "BmcProtocolError",
    "BmcTimeout",
    "BmcUnreachable",
    "BmcUnsupported",
    "BootDevice",
    "PowerAction",
    "PowerDriver",
    "PowerError",
    "PowerFailedError",
    "PowerState",
    "Secret",
]

MASK = "***"


class PowerState(enum.StrEnum):
    """What the BMC says about the chassis power."""

    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"  # the manual driver, or a BMC answer we cannot read


class BootDevice(enum.StrEnum):
    """Where the machine should boot next."""

    PXE = "pxe"
    DISK = "disk"


class PowerAction(enum.StrEnum):
    """The operations `PowerService.run` dispatches to a driver method of the same name."""

    STATUS = "status"
    ON = "on"
    OFF = "off"
    SOFT_OFF = "soft_off"
    RESET = "reset"
    CYCLE = "cycle"
    SET_BOOT_DEVICE = "set_boot_device"


class Secret:
    """A password that never shows itself by accident.

    `str()` and `repr()` give `***`. `reveal()` returns the plaintext; with `Secret.lazy`
    the plaintext is produced (decrypted) only when `reveal()` is called, i.e. inside the
    worker thread making the BMC call, and is not kept.
    """

    __slots__ = ("_source",)

    def __init__(self, value: str | Callable[[], str]) -> None:
        """Wrap a plaintext or a zero-argument function that returns (decrypts) it."""
        self._source = value

    @classmethod
    def lazy(cls, reveal: Callable[[], str]) -> Secret:
        """A secret decrypted on each `reveal()` (e.g. by the store's key)."""
        return cls(reveal)

    def reveal(self) -> str:
        """The plaintext. Call only where it is handed to the BMC client."""
        source = self._source
        return source() if callable(source) else source

    def __repr__(self) -> str:
        return f"Secret({MASK})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        # Identity only: comparing would reveal (and maybe decrypt) both sides.
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __reduce__(self) -> tuple[object, ...]:
        # Refuse pickling: a pickle would carry the plaintext across a boundary.
        msg = "Secret values cannot be pickled"
        raise TypeError(msg)


@dataclass(frozen=True, slots=True)
class BmcCredentials:
    """How to reach one BMC. `password` is a `Secret`; the repr shows `***`.

    `options` carries driver-specific settings from the inventory (`BmcSpec.options`):
    redfish `system` (id or path of the ComputerSystem), `scheme` (`https`/`http`),
    `verify_tls` (bool); manual `machine` (name shown to the operator).
    """

    driver: str
    address: str = ""
    port: int | None = None
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    options: Mapping[str, object] = field(default_factory=dict, hash=False, compare=False)

    @property
    def label(self) -> str:
        """`driver address:port` for messages and events (never the user or password)."""
        if not self.address:
            return self.driver
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.driver} {self.address}{port}"


REASONS = {
    "unreachable": "bmc-unreachable",
    "timeout": "bmc-timeout",
    "auth": "bmc-auth-refused",
    "unsupported": "bmc-unsupported",
    "insecure": "bmc-insecure",
    "protocol": "bmc-protocol",
    "internal": "power-internal",
}
"""`PowerError.kind` -> the API's machine-readable `reason` (docs/api.md, docs/power.md)."""

SUMMARIES = {
    "unreachable": "the BMC did not answer",
    "timeout": "the BMC did not finish in time",
    "auth": "the BMC refused the credentials",
    "unsupported": "the BMC does not support this",
    "insecure": "the BMC was refused as insecure",
    "protocol": "BMC protocol error",
    "internal": "internal error in the power driver",
}
"""One operator-facing phrase per kind, shown before the driver's own message."""


class PowerError(Exception):
    """A power call failed. `kind` names the failure for counters and events.

    `transient` errors may succeed when retried (busy BMC, dropped session); the service
    retries only those, with backoff. The message is safe to show and to log. `check`
    names the inventory `bmc:` fields the operator should look at (class default per kind,
    narrowed by the driver where it knows better, e.g. `bmc.options.system`).
    """

    kind = "error"
    transient = False
    default_check: tuple[str, ...] = ("bmc.driver", "bmc.address", "bmc.port")

    def __init__(
        self, bmc: str, problem: str, hint: str = "", *, check: tuple[str, ...] | None = None
    ) -> None:
        """`bmc` is `BmcCredentials.label`; `hint` says what the operator should check."""
        self.bmc = bmc
        self.problem = problem
        self.hint = hint
        self.check = self.default_check if check is None else check
        text = f"{bmc}: {problem}"
        if hint:
            text += f" ({hint})"
        super().__init__(text)

    @property
    def reason(self) -> str:
        """The machine-readable reason (`bmc-auth-refused`, `bmc-unreachable`, ...)."""
        return REASONS.get(self.kind, "bmc-protocol")


class BmcUnreachable(PowerError):  # noqa: N818 - names fixed by the power contract
    """No answer at all: wrong address/port, network, IPMI-over-LAN or Redfish disabled."""

    kind = "unreachable"
    default_check = ("bmc.address", "bmc.port")


class BmcAuthFailed(PowerError):  # noqa: N818 - names fixed by the power contract
    """The BMC answered but refused the user name, the password or the privilege level."""

    kind = "auth"
    default_check = ("bmc.username", "bmc.password")


class BmcUnsupported(PowerError):  # noqa: N818 - names fixed by the power contract
    """The BMC does not implement this operation or option (the `NotSupported` default)."""

    kind = "unsupported"
    default_check = ("bmc.driver",)


class BmcInsecure(BmcUnsupported):
    """The BMC offered only what we refuse: cipher suite 0, no integrity/privacy, IPMI 1.5.

    Raised as an alert: it can mean a misconfigured BMC or an active downgrade attempt.
    """

    kind = "insecure"


class BmcTimeout(PowerError):  # noqa: N818 - names fixed by the power contract
    """The BMC started answering but a call did not finish in time (hung or overloaded)."""

    kind = "timeout"
    default_check = ("bmc.address", "bmc.port")


class BmcProtocolError(PowerError):
    """The BMC answered with an error or with something we could not parse."""

    kind = "protocol"
    default_check = ("bmc.driver", "bmc.port")

    def __init__(
        self,
        bmc: str,
        problem: str,
        hint: str = "",
        *,
        transient: bool = False,
        check: tuple[str, ...] | None = None,
    ) -> None:
        """As `PowerError`; `transient=True` lets the service retry it."""
        super().__init__(bmc, problem, hint, check=check)
        self.transient = transient


class PowerFailedError(Exception):
    """A power call on a named machine failed: what the API and the CLI report.

    Carries the driver's typed outcome (`PowerError`, flattened by `PowerService` into a
    `PowerResult`): `kind`, `reason` (the API's machine-readable name), `bmc` (`driver
    address:port`) and `check` (the inventory `bmc:` fields to look at). `str()` is one
    line for an operator and never holds a secret (driver messages hold none).
    """

    def __init__(
        self,
        machine: str,
        action: str,
        *,
        kind: str,
        bmc: str,
        message: str = "",
        check: tuple[str, ...] = (),
    ) -> None:
        """`message` is the driver's `str(PowerError)`."""
        self.machine = machine
        self.action = action
        self.kind = kind
        self.reason = REASONS.get(kind, "bmc-protocol")
        self.bmc = bmc
        self.check = check
        self.driver_message = message or f"{bmc}: {action} failed"
        text = f"{SUMMARIES.get(kind, 'the BMC call failed')}: {self.driver_message}"
        if check:
            text += f"; check {', '.join(check)} of machine {machine} in the inventory"
        super().__init__(text)


@runtime_checkable
class PowerDriver(Protocol):
    """One BMC's power and boot controls. Every method is a coroutine and is safe to cancel.

    All methods may raise `BmcUnreachable`, `BmcAuthFailed`, `BmcTimeout` or
    `BmcProtocolError`; each documents what else it may raise. Power actions return once
    the BMC has *accepted* the request: the transition itself can take seconds, so
    callers poll `status()` to see it happen.
    """

    @property
    def credentials(self) -> BmcCredentials:
        """The BMC this driver talks to."""
        ...

    async def status(self) -> PowerState:
        """Current chassis power: `ON` or `OFF`; `UNKNOWN` only from drivers that cannot see.

        Allowed in every state.
        """
        ...

    async def on(self) -> None:
        """Power on. Allowed in every state; a no-op (for the BMC) when already on."""
        ...

    async def off(self) -> None:
        """Hard power off (no OS shutdown). Allowed in every state; a no-op when off."""
        ...

    async def soft_off(self) -> None:
        """Ask the OS to shut down (ACPI power button). Returns before the OS is down.

        Allowed when on; when off the BMC may ignore it. Raises `BmcUnsupported` if the
        BMC has no soft shutdown.
        """
        ...

    async def reset(self) -> None:
        """Hard reset (warm reboot) without cycling power. Allowed when on.

        When off, BMCs differ (ignore, power on, or refuse with `BmcUnsupported`).
        """
        ...

    async def cycle(self) -> None:
        """Power off, wait, power on. Allowed when on; `BmcUnsupported` when the BMC lacks it.

        When off, IPMI says a cycle has no effect; some BMCs refuse it.
        """
        ...

    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = True
    ) -> None:
        """Choose the next boot device: once (default) or `persistent`, UEFI or legacy.

        Allowed in every state; takes effect at the next boot. Raises `BmcUnsupported`
        when the BMC rejects the device or the option (e.g. persistent, legacy).
        """
        ...
