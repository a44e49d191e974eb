"""A behavioural fake BMC for unit tests and dry runs (after sushy-tools' `FakeDriver`).

Power transitions are delayed like real hardware: `on()` is accepted at once, and
`status()` reports the new state only after `transition_s` (time comes from an
injectable `clock`). A one-time boot override is consumed by the next power-on, as
firmware does, and the device used is appended to `boots`. Errors can be queued with
`fail_next` or made permanent with `broken`; every call is recorded in `calls`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from provisioner.power.base import (
    BmcCredentials,
    BmcUnsupported,
    BootDevice,
    PowerAction,
    PowerError,
    PowerState,
)

__all__ = ["BootOverride", "FakeCall", "FakePowerDriver"]


@dataclass(frozen=True, slots=True)
class FakeCall:
    """One recorded call: the action and its keyword arguments."""

    action: PowerAction
    kwargs: tuple[tuple[str, object], ...] = ()
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class BootOverride:
    """The boot device the fake BMC will use next."""

    device: BootDevice
    persistent: bool
    uefi: bool


class FakePowerDriver:
    """`PowerDriver` without hardware. Same contract and allowed states as the real ones."""

    def __init__(
        self,
        credentials: BmcCredentials | None = None,
        *,
        initial: PowerState = PowerState.OFF,
        transition_s: float = 0.0,
        call_delay_s: float = 0.0,
        unsupported: frozenset[PowerAction] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`transition_s`: delay before a power change shows; `call_delay_s`: per-call latency."""
        self._creds = credentials or BmcCredentials("fake", "fake-bmc")
        self._clock = clock
        self._sleep = sleep
        self.transition_s = transition_s
        self.call_delay_s = call_delay_s
        self.unsupported = unsupported
        self.power = initial
        self._pending: tuple[PowerState, float] | None = None
        self.boot: BootOverride | None = None
        self.boots: list[BootDevice | None] = []
        self.calls: list[FakeCall] = []
        self._failures: deque[tuple[PowerAction | None, PowerError]] = deque()
        self.broken: PowerError | None = None

    @property
    def credentials(self) -> BmcCredentials:
        """The (fake) BMC this driver stands for."""
        return self._creds

    def fail_next(self, error: PowerError, *, action: PowerAction | None = None) -> None:
        """Make the next call (or the next call of `action`) raise `error`."""
        self._failures.append((action, error))

    def actions(self) -> list[PowerAction]:
        """The recorded actions, in order."""
        return [call.action for call in self.calls]

    async def status(self) -> PowerState:
        """The power state after any transition whose delay has passed."""
        await self._enter(PowerAction.STATUS)
        return self.power

    async def on(self) -> None:
        """Start powering on (shows after `transition_s`)."""
        await self._enter(PowerAction.ON)
        self._schedule(PowerState.ON)

    async def off(self) -> None:
        """Start a hard power off (shows after `transition_s`)."""
        await self._enter(PowerAction.OFF)
        self._schedule(PowerState.OFF)

    async def soft_off(self) -> None:
        """Start an OS shutdown; ignored when already off."""
        await self._enter(PowerAction.SOFT_OFF)
        if self.power is PowerState.ON:
            self._schedule(PowerState.OFF)

    async def reset(self) -> None:
        """Reboot in place: stays on, boots again. No effect when off."""
        await self._enter(PowerAction.RESET)
        if self.power is PowerState.ON:
            self._booted()

    async def cycle(self) -> None:
        """Off now, on after `transition_s`. No effect when off (IPMI §28.3)."""
        await self._enter(PowerAction.CYCLE)
        if self.power is PowerState.ON:
            self.power = PowerState.OFF
            self._schedule(PowerState.ON)

    async def set_boot_device(
        self, device: BootDevice, *, persistent: bool = False, uefi: bool = True
    ) -> None:
        """Remember the override for the next boot (or every boot when `persistent`)."""
        await self._enter(PowerAction.SET_BOOT_DEVICE, device=device, persistent=persistent, uefi=uefi)
        self.boot = BootOverride(device, persistent, uefi)

    # ---- internals ---------------------------------------------------------------

    async def _enter(self, action: PowerAction, **kwargs: object) -> None:
        self.calls.append(FakeCall(action, tuple(sorted(kwargs.items())), self._clock()))
        if self.call_delay_s:
            await self._sleep(self.call_delay_s)
        self._settle()
        if self.broken is not None:
            raise self.broken
        for index, (wanted, error) in enumerate(self._failures):
            if wanted is None or wanted is action:
                del self._failures[index]
                raise error
        if action in self.unsupported:
            raise BmcUnsupported(self._creds.label, f"{action} is not supported by this BMC")

    def _schedule(self, target: PowerState) -> None:
        if self.transition_s <= 0:
            self._apply(target)
        else:
            self._pending = (target, self._clock() + self.transition_s)

    def _settle(self) -> None:
        if self._pending is not None and self._clock() >= self._pending[1]:
            target, _ = self._pending
            self._pending = None
            self._apply(target)

    def _apply(self, target: PowerState) -> None:
        was = self.power
        self.power = target
        if was is not PowerState.ON and target is PowerState.ON:
            self._booted()

    def _booted(self) -> None:
        override = self.boot
        self.boots.append(override.device if override else None)
        if override is not None and not override.persistent:
            self.boot = None  # a one-time override is consumed by the boot
