"""The sans-I/O DHCP server core: full (authoritative) DHCP, proxyDHCP and relayed requests.

Theory of operation
-------------------
Bytes and time go in (`receive_datagram(data, addr, now, port=)`), and three kinds of
output come out, each drained by the I/O shell:

- `datagrams_to_send()`: replies that need nothing else (OFFER, NAK, INFORM's ACK,
  proxyDHCP answers);
- `commits_to_write()`: `PendingAck`s. A lease must be durable before its ACK leaves
  (RFC 2131 §4.3.2 and docs/threats.md G1), so the shell writes them (many at once: group
  commit), then calls `commit_done(pending, ok)`, which queues the ACK, or a NAK when the
  database said another instance owns the address;
- `next_event()`: audit `Event`s and `DiscoveredMachine`s.

Rules, in order, for each datagram (every drop is counted by reason, never raised):
1. It must parse (codec), be a BOOTREQUEST with option 53 and an Ethernet chaddr.
2. Relayed (giaddr set) requests are served only when both the sender and giaddr are in
   `relay_agents` (docs/threats.md A18); the subnet is then chosen by giaddr (RFC 2131 §4.3.1),
   otherwise by our interface address, and option 82 is echoed (RFC 3046 §2.2). Option 82
   from a non-relayed client is ignored (A17).
3. Per-client token bucket (A19, A22); the table of buckets is bounded.
4. Proxy mode answers only PXE clients and never sets yiaddr (A21); port `proxy` is the
   PXE boot-server port 4011, where REQUESTs are answered by unicast.
5. Full mode runs the RFC 2131 §4.3 exchanges: DISCOVER (§4.3.1), REQUEST in SELECTING,
   INIT-REBOOT, RENEWING and REBINDING (§4.3.2), DECLINE (§4.3.3), RELEASE (§4.3.4),
   INFORM (§4.3.5). The address-choosing rules live in `allocate.py`.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from provisioner.dhcp.allocate import Allocator, ClientView, client_view
from provisioner.dhcp.book import Lease, LeaseBook, LeaseState
from provisioner.dhcp.codec import BOOTREQUEST, DhcpPacket, RemoteProtocolError, parse
from provisioner.dhcp.config import ServerConfig, Subnet
from provisioner.dhcp.limits import (
    DiscoveredMachine,
    RateLimiter,
    RecentSet,
    TokenBucket,
    discovered_machine,
)
from provisioner.dhcp.options import MessageType
from provisioner.dhcp.pxe import BootDecision, PxeRequest, decide
from provisioner.dhcp.replies import Outgoing, ReplySpec, build_reply, destination, proxy_reply
from provisioner.events import Event, Severity
from provisioner.matching import MachineIndex
from provisioner.model import MachineSummary

__all__ = ["DhcpServer", "DiscoveredMachine", "PendingAck"]

log = logging.getLogger(__name__)

_ZERO = "0.0.0.0"
HOUSEKEEPING_S = 5.0
DISCOVERED_REPEAT_S = 60.0
MAX_DISCOVERED_TRACKED = 4_096
DECLINE_RATE_PER_S = 5.0


@dataclass(frozen=True, slots=True)
class PendingAck:
    """A lease write the shell must make durable before sending `reply` (None: no reply)."""

    lease: Lease
    previous: Lease | None
    reply: Outgoing | None
    request: DhcpPacket | None
    """The REQUEST being answered, to build a NAK if the write loses (built lazily: rare)."""


class DhcpServer:
    """One DHCP core, for one listening interface (`config.server_ip`)."""

    def __init__(
        self,
        config: ServerConfig,
        machines: Callable[[], MachineIndex],
        book: LeaseBook | None = None,
    ) -> None:
        """A core answering as `config.server_ip`; cores of one process share `book`."""
        self.config = config
        self.book = book if book is not None else LeaseBook()
        self.counters: Counter[str] = Counter()
        self._machines = machines
        self._alloc = Allocator(config, self.book)
        self._out: list[Outgoing] = []
        self._commits: list[PendingAck] = []
        self._events: deque[Event | DiscoveredMachine] = deque(maxlen=10_000)
        self._limiter = RateLimiter(config.rate_per_s, config.rate_burst, config.max_tracked_clients)
        self._decline_bucket = TokenBucket(DECLINE_RATE_PER_S, DECLINE_RATE_PER_S, 0.0)
        self._discovered = RecentSet(DISCOVERED_REPEAT_S, MAX_DISCOVERED_TRACKED)
        self._exhausted_event_at = -1e18
        self._next_housekeeping = 0.0

    # -- the sans-I/O interface --------------------------------------------------------

    def datagrams_to_send(self) -> list[Outgoing]:
        """Replies ready to go out now."""
        out, self._out = self._out, []
        return out

    def commits_to_write(self) -> list[PendingAck]:
        """Lease writes to make durable, each then passed to `commit_done`."""
        out, self._commits = self._commits, []
        return out

    def next_event(self) -> Event | DiscoveredMachine | None:
        """The oldest undelivered event, if any."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float:
        """When `handle_timer` wants to run next."""
        return self._next_housekeeping

    def handle_timer(self, now: float) -> None:
        """Expire offers and quarantine, prune rate-limit and discovery tables."""
        self.book.expire(now)
        horizon = now - 60.0
        self._limiter.prune(horizon)
        self._discovered.prune(now)
        self._next_housekeeping = now + HOUSEKEEPING_S

    def commit_done(self, pending: PendingAck, *, ok: bool, winner: Lease | None = None) -> None:
        """The shell wrote (ok) or failed to write `pending.lease`; queue ACK or NAK."""
        if ok:
            if pending.reply is not None:
                self._out.append(pending.reply)
                self.counters["answered"] += 1
                self.counters["ack"] += 1
            return
        self.counters["commit_conflict"] += 1
        self.book.restore(pending.lease, pending.previous)
        if winner is not None:
            self.book.put(winner)  # another instance holds it: learn that
        if pending.request is not None:
            self._out.append(self._nak(pending.request))
            self.counters["nak"] += 1

    def learn(self, lease: Lease) -> None:
        """Record a lease another instance wrote (sync from the shared database)."""
        current = self.book.by_ip.get(lease.ip)
        if current is not None and current.key == lease.key and current.expires_at > lease.expires_at:
            return
        self.book.put(lease)

    def receive_datagram(
        self, data: bytes, addr: tuple[str, int], now: float, *, proxy_port: bool = False
    ) -> None:
        """Handle one datagram from `addr`; `proxy_port` when it arrived on port 4011."""
        self.counters["received"] += 1
        if now >= self._next_housekeeping:
            self.handle_timer(now)
        try:
            request = parse(data)
        except RemoteProtocolError as exc:
            self._drop("malformed", "from %r: %s", addr, exc)
            return
        if request.op != BOOTREQUEST:
            self._drop("not_request", "from %r", addr)
            return
        mtype = request.message_type
        if mtype is None or mtype not in MessageType.__members__.values():
            self._drop("no_message_type", "from %r (plain BOOTP is not served)", addr)
            return
        view = client_view(request)
        if view is None:
            self._drop("bad_chaddr", "from %r htype=%d hlen=%d", addr, request.htype, request.hlen)
            return
        if request.giaddr != _ZERO and not (
            addr[0] in self.config.relay_agents and request.giaddr in self.config.relay_agents
        ):
            self._drop("untrusted_relay", "from %r giaddr %s", addr, request.giaddr)
            return
        if not self._limiter.allow(view.mac, now):
            self._drop("rate_limited", "mac %s", view.mac)
            return
        try:
            self._dispatch(request, MessageType(mtype), view, addr, now, proxy_port=proxy_port)
        except RemoteProtocolError as exc:
            self._drop("malformed", "from %r: %s", addr, exc)

    # -- dispatch ----------------------------------------------------------------------

    def _dispatch(
        self,
        request: DhcpPacket,
        mtype: MessageType,
        view: ClientView,
        addr: tuple[str, int],
        now: float,
        *,
        proxy_port: bool,
    ) -> None:
        index = self._machines()
        machine = index.match(view.labels)
        if machine is not None:
            # From here on the client is keyed as that machine's binding (binding.py):
            # its reservation follows it across client identifiers and boot stages.
            view = replace(view, machine=machine.name)
        boot = self._boot(
            request, view, machine is not None, now, pxe_allowed=machine is None or machine.pxe_allowed
        )
        if proxy_port or self.config.mode == "proxy":
            self._proxy(request, mtype, boot, addr, proxy_port=proxy_port)
            return
        subnet = self._alloc.subnet_of(request)
        if subnet is None:
            self._drop("no_subnet", "giaddr %s ciaddr %s", request.giaddr, request.ciaddr)
            return
        reserved = self._alloc.reserved(index)
        hostname = (machine.hostname or machine.name) if machine is not None else None
        if mtype == MessageType.DISCOVER:
            ip = self._alloc.choose(view, subnet, machine, reserved, now)
            if ip is None:
                self._exhausted(subnet, now)
                return
            if not self.book.hold_offer(view.key, ip, now):
                self._drop("offer_table_full", "mac %s", view.mac)
                return
            spec = ReplySpec(MessageType.OFFER, ip, subnet, subnet.lease_time, hostname, boot)
            self._send(request, spec)
        elif mtype == MessageType.REQUEST:
            self._request(request, view, subnet, machine, boot, reserved, now)
        elif mtype == MessageType.DECLINE:
            self._decline(request, view, subnet, now)
        elif mtype == MessageType.RELEASE:
            self._release(request, view, now)
        elif mtype == MessageType.INFORM:
            # RFC 2131 §4.3.5: configuration only; no lease, no yiaddr, no lease time.
            self._send(request, ReplySpec(MessageType.ACK, subnet=subnet, hostname=hostname, boot=boot))
        else:
            self._drop("server_message", "type %d from a client", mtype)

    def _request(
        self,
        request: DhcpPacket,
        view: ClientView,
        subnet: Subnet,
        machine: MachineSummary | None,
        boot: BootDecision | None,
        reserved: frozenset[str],
        now: float,
    ) -> None:
        name = machine.name if machine is not None else None
        hostname = (machine.hostname or machine.name) if machine is not None else None
        server_id = request.server_id
        if server_id is not None and server_id != self.config.server_ip:
            # SELECTING, and the client chose another server (RFC 2131 §4.3.2).
            self.book.drop_offer(view.key)
            self.counters["other_server_chosen"] += 1
            return
        ip: str | None
        if server_id is not None:
            ip = request.requested_ip or request.ciaddr
            ok = ip == self.book.offer_of(view.key, now) or self._alloc.acceptable(
                view, ip, subnet, machine, reserved, now
            )
        else:
            # INIT-REBOOT carries option 50; RENEWING/REBINDING carry ciaddr (§4.3.2).
            ip = request.requested_ip if request.ciaddr == _ZERO else request.ciaddr
            ok = ip is not None and self._alloc.acceptable(view, ip, subnet, machine, reserved, now)
        if not ok or ip is None:
            self._out.append(self._nak(request))
            self.counters["nak"] += 1
            return
        lease = Lease(
            ip=ip,
            mac=view.mac,
            client_id=view.client_id,
            hostname=view.hostname,
            state=LeaseState.BOUND,
            expires_at=now + subnet.lease_time,
            machine=name,
            instance=self.config.instance,
        )
        previous = self.book.put(lease)
        spec = ReplySpec(MessageType.ACK, ip, subnet, subnet.lease_time, hostname, boot)
        reply = Outgoing(
            build_reply(self.config, request, spec), destination(self.config, request, MessageType.ACK)
        )
        self._commits.append(PendingAck(lease, previous, reply, request))
        if name is not None:
            self._event(now, "dhcp.ack", name, f"{ip} to {view.mac}", {"ip": ip, "mac": view.mac})

    def _decline(self, request: DhcpPacket, view: ClientView, subnet: Subnet, now: float) -> None:
        ip = request.requested_ip
        lease = self.book.lease_of(view.key)
        if ip is None or lease is None or lease.ip != ip or not self._decline_bucket.take(now):
            self._drop("decline_ignored", "mac %s ip %s", view.mac, ip)
            return
        # RFC 2131 §4.3.3: mark the address unusable; bounded quarantine (docs/threats.md A20).
        declined = replace(
            lease, state=LeaseState.DECLINED, expires_at=now + self.config.decline_quarantine_s
        )
        previous = self.book.put(declined)
        self.book.drop_offer(view.key)
        if subnet.pool is not None:
            subnet.pool.exhausted_until = 0.0
        self._commits.append(PendingAck(declined, previous, None, None))
        self._event(
            now, "dhcp.decline", lease.machine, f"{ip} declined by {view.mac}", {"ip": ip}, Severity.WARNING
        )

    def _release(self, request: DhcpPacket, view: ClientView, now: float) -> None:
        lease = self.book.lease_of(view.key)
        # docs/threats.md A20: a RELEASE must name us, and the lease must be this client's.
        if (
            request.server_id != self.config.server_ip
            or lease is None
            or lease.ip != request.ciaddr
            or lease.state != LeaseState.BOUND
        ):
            self._drop("release_ignored", "mac %s ciaddr %s", view.mac, request.ciaddr)
            return
        released = self.book.released(lease, now)
        previous = self.book.put(released)
        self._commits.append(PendingAck(released, previous, None, None))
        self.counters["released"] += 1

    # -- proxyDHCP ----------------------------------------------------------------------

    def _proxy(
        self,
        request: DhcpPacket,
        mtype: MessageType,
        boot: BootDecision | None,
        addr: tuple[str, int],
        *,
        proxy_port: bool,
    ) -> None:
        out = proxy_reply(self.config, request, mtype, boot, addr, proxy_port=proxy_port)
        if out is None:
            self._drop("proxy_ignored", "type %d mac %s", mtype, request.mac)
            return
        self._out.append(out)
        self.counters["answered"] += 1

    # -- helpers ------------------------------------------------------------------------

    def _boot(
        self, request: DhcpPacket, view: ClientView, known: bool, now: float, *, pxe_allowed: bool
    ) -> BootDecision | None:
        pxe = PxeRequest(request.client_arches, request.vendor_class, request.user_classes)
        decision = decide(pxe, self.config.http_base_url, self.config.boot_files)
        if decision is None or known:
            return decision if pxe_allowed else None
        policy = self.config.unknown_machines
        if policy != "ignore":
            self._record_discovered(request, view, now)
        return decision if policy == "discovery" else None

    def _record_discovered(self, request: DhcpPacket, view: ClientView, now: float) -> None:
        if not self._discovered.first_in_window(view.mac, now):
            return
        self._events.append(discovered_machine(request, view.mac, view.labels.uuid, now))

    def _nak(self, request: DhcpPacket) -> Outgoing:
        spec = ReplySpec(MessageType.NAK, message="address not available")
        return Outgoing(
            build_reply(self.config, request, spec), destination(self.config, request, MessageType.NAK)
        )

    def _send(self, request: DhcpPacket, spec: ReplySpec) -> None:
        data = build_reply(self.config, request, spec)
        self._out.append(Outgoing(data, destination(self.config, request, spec.message_type)))
        self.counters["answered"] += 1
        self.counters[spec.message_type.name.lower()] += 1

    def _exhausted(self, subnet: Subnet, now: float) -> None:
        self.counters["dropped_pool_exhausted"] += 1
        if now - self._exhausted_event_at >= 60.0:
            self._exhausted_event_at = now
            text, data = f"no free address in {subnet.network}", {"subnet": str(subnet.network)}
            self._event(now, "dhcp.pool_exhausted", None, text, data, Severity.WARNING)

    def _event(
        self, now: float, kind: str, machine: str | None, message: str, data: Mapping[str, object],
        severity: Severity = Severity.INFO,
    ) -> None:  # fmt: skip
        at = datetime.fromtimestamp(now, UTC)
        self._events.append(Event(kind, at, machine=machine, severity=severity, message=message, data=data))

    def _drop(self, reason: str, fmt: str, *args: object) -> None:
        self.counters["dropped_" + reason] += 1
        if log.isEnabledFor(logging.DEBUG):
            # %r everywhere client data appears: logs never carry raw control bytes (A16).
            log.debug("dhcp drop %s: %s", reason, fmt % args)
