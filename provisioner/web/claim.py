"""Who may receive a machine's config token: the anti-spoofing rule of issue 14.

Theory of operation
-------------------
A MAC address is no secret (every DHCP broadcast carries it), so "asks with the machine's
MAC" proves nothing. Before a stage-two script with a token is issued, the requester must
also pass this check:

- full DHCP mode: we handed out the machine's address, so the requester must be the address
  holding the machine's bound, unexpired lease from us. Anyone else gets a hold script and
  an ALERT (`boot.spoofing`, reason `no-lease` or `not-lease-holder`); the real machine is
  not disturbed: its token is not revoked.
- proxy and relay modes (and `dhcp.mode = "off"`): another server hands out addresses, so
  the first address to ask in the provisioning window owns the window while its token is
  live (unused, unrevoked, unexpired). The same address asking again gets a fresh token (a
  re-netboot). A *different* address asking while a token is live means one of the two is
  an impostor, and we cannot tell which: the window is frozen (`store/holds.py`), the live
  token revoked, an ALERT names both addresses, and every requester gets a hold script
  until the operator runs `provisioner machines release NAME`.

A frozen window answers every script request with a hold script, so a spoofer cannot
unfreeze it by asking again. What this does not stop (docs/threats.md, docs/http.md): a
host that can also use the machine's address (full mode), or that asks before the real
machine does (proxy mode: then the real machine's request freezes the window and the
operator sees the alert before any config leaves, unless the attacker fetched the config in
between; that fetch is recorded with its address).
"""

from __future__ import annotations

from datetime import datetime

from provisioner.events import Event, Severity, utcnow
from provisioner.model import MachineState
from provisioner.store.records import MachineRecord
from provisioner.web.context import WebContext

__all__ = ["AFTER_CONFIG_STATES", "HOLD_REASON_FROZEN", "check_served_elsewhere", "claim_refusal"]

HOLD_REASON_FROZEN = "window-frozen"
AFTER_CONFIG_STATES = frozenset({MachineState.CONFIG_SERVED.value})
"""States in which the machine's config has just been delivered and Talos is installing."""


def _alert(c: WebContext, machine: str, reason: str, message: str, **data: str) -> None:
    c.rt.events.emit(
        Event(
            kind="boot.spoofing",
            at=utcnow(),
            machine=machine,
            severity=Severity.ALERT,
            message=message,
            data={"reason": reason, **data},
        )
    )


async def claim_refusal(c: WebContext, record: MachineRecord, source: str, now: datetime) -> str | None:
    """None if `source` may get a token for `record` now; else the hold reason (event emitted)."""
    name = record.name
    hold = await c.holds.get(name)
    if hold is not None:
        c.rt.events.emit(
            Event(
                kind="boot.held",
                at=now,
                machine=name,
                severity=Severity.WARNING,
                message="provisioning window frozen by a spoofing alert: release it to continue",
                data={"source": source, "first": hold.first, "second": hold.second},
            )
        )
        return HOLD_REASON_FROZEN
    if c.rt.settings.dhcp.mode == "full":
        leased = await c.tokens.lease_addresses(name, record.macs, now=now)
        if source in leased:
            return None
        reason = "not-lease-holder" if leased else "no-lease"
        _alert(
            c,
            name,
            reason,
            f"{source} asked for {name}'s boot script without holding its lease",
            source=source,
            leases=",".join(sorted(leased)),
        )
        return reason
    live = await c.tokens.live(name, now=now)
    if live is None or live.issued_to == source:
        return None
    await c.holds.freeze(name, live.issued_to, source, now=now)
    await c.tokens.revoke_machine(name)
    _alert(
        c,
        name,
        HOLD_REASON_FROZEN,
        f"two addresses asked for {name}'s config token in one provisioning window: "
        f"{live.issued_to} then {source}; window frozen until `provisioner machines release {name}`",
        first=live.issued_to,
        second=source,
        source=source,
    )
    return HOLD_REASON_FROZEN


async def check_served_elsewhere(c: WebContext, record: MachineRecord, source: str) -> None:
    """Raise an ALERT if the machine asks from an address other than the one that got its config.

    Right after delivery the machine runs Talos; a stage-two request for it from *another*
    address means the config went to an impostor (proxy mode, attacker first) or the
    impostor is asking now. Either way the operator must know: rotate the cluster secrets.
    """
    if record.state not in AFTER_CONFIG_STATES:
        return
    spent = await c.tokens.last_spent(record.name)
    if spent is None or spent.used_by in ("", source):
        return
    _alert(
        c,
        record.name,
        "config-served-elsewhere",
        f"{record.name}'s config went to {spent.used_by}, and now {source} asks for its boot script",
        served_to=spent.used_by,
        source=source,
    )
