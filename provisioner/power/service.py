"""`PowerService`: the facade the daemon, the API and the lifecycle call.

`run(creds, action, **kw)` picks the driver (`registry.make_driver`), runs the action with
retries for transient errors only (exponential backoff with jitter), and never raises a
BMC failure: it returns a `PowerResult` and records

* counters: `calls`, `ok`, `retries`, `failures_<kind>` (unreachable, auth, unsupported,
  insecure, timeout, protocol, internal) plus the thread pool's `threads_*`;
* events: `power.call` on success, `power.failed` on failure (severity `alert` for a
  refused insecure BMC). Event data holds the driver, the BMC address and port, the
  action and its arguments, never the user name or password.

Wrong passwords are not retried (BMCs lock accounts after a few failures, docs/threats.md E4).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.power.base import (
    BmcCredentials,
    BmcInsecure,
    BmcProtocolError,
    BootDevice,
    PowerAction,
    PowerDriver,
    PowerError,
    PowerState,
)
from provisioner.power.calls import BlockingCalls
from provisioner.power.fake import FakePowerDriver
from provisioner.power.registry import make_driver
from provisioner.settings import PowerSettings

__all__ = ["PowerResult", "PowerService"]

log = logging.getLogger(__name__)
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


@dataclass(frozen=True, slots=True)
class PowerResult:
    """The outcome of one `PowerService.run`. `message` is safe to show anywhere."""

    bmc: str
    action: PowerAction
    ok: bool
    state: PowerState | None = None
    error_kind: str | None = None
    message: str = ""
    reason: str | None = None
    """The API's machine-readable failure reason (`PowerError.reason`)."""
    check: tuple[str, ...] = ()
    """The inventory `bmc:` fields to check (`PowerError.check`)."""
    attempts: int = 1
    duration_s: float = 0.0


class PowerService:
    """Runs power actions against BMCs for the daemon (see the module doc)."""

    def __init__(
        self,
        settings: PowerSettings,
        events: EventSink,
        *,
        backoff_s: float = DEFAULT_BACKOFF_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """`settings` is the `[power]` section; `events` the audit sink."""
        self._settings = settings
        self._events = events
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self._calls: BlockingCalls | None = None
        self._fakes: dict[str, FakePowerDriver] = {}
        self._counters: Counter[str] = Counter()

    async def start(self) -> None:
        """Create the worker pool (idempotent)."""
        if self._calls is None:
            self._calls = BlockingCalls(
                concurrency=self._settings.concurrency, timeout_s=self._settings.timeout_s
            )

    async def stop(self) -> None:
        """Stop the worker pool; orphaned BMC calls end on their own (bounded by pyghmi)."""
        if self._calls is not None:
            self._calls.close()
            self._calls = None

    def counters(self) -> Mapping[str, int]:
        """Counters for Prometheus (see the module doc)."""
        merged = dict(self._counters)
        if self._calls is not None:
            merged.update({f"threads_{k}": v for k, v in self._calls.counters().items()})
        return merged

    def driver(self, credentials: BmcCredentials) -> PowerDriver:
        """The driver for this BMC (fakes are kept so their state persists)."""
        if self._calls is None:
            msg = "PowerService.start() was not called"
            raise RuntimeError(msg)
        return make_driver(
            credentials, self._settings, calls=self._calls, events=self._events, fakes=self._fakes
        )

    async def run(
        self,
        credentials: BmcCredentials,
        action: PowerAction | str,
        *,
        machine: str | None = None,
        device: BootDevice | str = BootDevice.PXE,
        persistent: bool = False,
        uefi: bool = True,
    ) -> PowerResult:
        """Run `action` on the BMC; `device`/`persistent`/`uefi` apply to set_boot_device."""
        action = PowerAction(action)
        device = BootDevice(device)
        self._counters["calls"] += 1
        started = self._clock()
        attempts = 0
        data: dict[str, object] = {
            "driver": credentials.driver,
            "address": credentials.address,
            "port": credentials.port,
            "action": str(action),
        }
        if action is PowerAction.SET_BOOT_DEVICE:
            data.update(device=str(device), persistent=persistent, uefi=uefi)
        while True:
            attempts += 1
            try:
                drv = self.driver(credentials)
                state = await self._dispatch(drv, action, device, persistent=persistent, uefi=uefi)
            except PowerError as err:
                if err.transient and attempts <= self._settings.retries:
                    self._counters["retries"] += 1
                    await self._sleep(self._delay(attempts))
                    continue
                return self._failed(credentials, action, err, data, attempts, started, machine)
            except Exception as err:
                log.exception("power driver %s failed unexpectedly", credentials.driver)
                wrapped = BmcProtocolError(
                    credentials.label,
                    f"internal error ({type(err).__name__})",
                    "see the daemon log",
                    check=(),
                )
                wrapped.kind = "internal"
                return self._failed(credentials, action, wrapped, data, attempts, started, machine)
            break
        self._counters["ok"] += 1
        duration = self._clock() - started
        suite = getattr(drv, "last_cipher_suite", None)
        if suite is not None:
            data["cipher_suite"] = suite
        if state is not None:
            data["state"] = str(state)
        data.update(attempts=attempts, duration_ms=round(duration * 1000))
        self._events.emit(
            Event(
                kind="power.call",
                at=utcnow(),
                machine=machine,
                message=f"{credentials.label}: {action} ok",
                data=data,
            )
        )
        return PowerResult(
            bmc=credentials.label,
            action=action,
            ok=True,
            state=state,
            attempts=attempts,
            duration_s=duration,
        )

    @staticmethod
    async def _dispatch(
        drv: PowerDriver, action: PowerAction, device: BootDevice, *, persistent: bool, uefi: bool
    ) -> PowerState | None:
        match action:
            case PowerAction.STATUS:
                return await drv.status()
            case PowerAction.ON:
                await drv.on()
            case PowerAction.OFF:
                await drv.off()
            case PowerAction.SOFT_OFF:
                await drv.soft_off()
            case PowerAction.RESET:
                await drv.reset()
            case PowerAction.CYCLE:
                await drv.cycle()
            case PowerAction.SET_BOOT_DEVICE:
                await drv.set_boot_device(device, persistent=persistent, uefi=uefi)
        return None

    def _delay(self, attempt: int) -> float:
        base = min(MAX_BACKOFF_S, self._backoff_s * 2.0 ** (attempt - 1))
        return base * (0.5 + self._rng.random() / 2)

    def _failed(
        self,
        credentials: BmcCredentials,
        action: PowerAction,
        err: PowerError,
        data: dict[str, object],
        attempts: int,
        started: float,
        machine: str | None,
    ) -> PowerResult:
        self._counters[f"failures_{err.kind}"] += 1
        duration = self._clock() - started
        message = str(err)
        log.warning("power %s failed: %s", action, message)
        data.update(error=err.kind, attempts=attempts, duration_ms=round(duration * 1000))
        self._events.emit(
            Event(
                kind="power.failed",
                at=utcnow(),
                machine=machine,
                severity=Severity.ALERT if isinstance(err, BmcInsecure) else Severity.WARNING,
                message=message,
                data=data,
            )
        )
        return PowerResult(
            bmc=credentials.label,
            action=action,
            ok=False,
            error_kind=err.kind,
            message=message,
            reason=err.reason,
            check=err.check,
            attempts=attempts,
            duration_s=duration,
        )
