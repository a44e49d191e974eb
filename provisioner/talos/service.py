"""The daemon's Talos parts: config rendering for the web layer, trustd, the trust check.

- `make_config_renderer(store, extra=telemetry_suffix(settings))`: the web layer's config
  endpoint calls it to render and validate a machine's config at the moment it is served
  (with the telemetry documents appended when telemetry is on).
- `TrustdPart` runs trustd on `[trustd] listen` for the clusters whose secrets are in
  the database (loaded at start: restart the daemon after adding a cluster's secrets).
  Talos dials trustd by IP without a server name, so one listener presents one TLS
  identity: with several clusters, the first by name is presented (and a warning logged);
  run one daemon per cluster, or one trustd listener per cluster, in that case.
- `make_trust_checker` gives the reconciler its "is this node trusted?" question.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from urllib.parse import urlsplit

from provisioner.events import Event, EventSink, Severity, utcnow
from provisioner.matching import MachineIndex
from provisioner.reconciler import TrustVerdict
from provisioner.settings import Settings, TrustdSettings
from provisioner.startup import StartupError, check_tcp_bindable
from provisioner.store.base import Store
from provisioner.store.records import ClusterRecord, MachineRecord
from provisioner.talos.render import ConfigRenderError, load_secrets, render_machine_config
from provisioner.talos.secrets import SecretsBundle
from provisioner.talos.trustcheck import check_trusted
from provisioner.talos.trustd import SanGuard, StaticResolver, TrustdServer, foreign_addresses, start_trustd
from provisioner.telemetry.documents import telemetry_documents
from provisioner.telemetry.settings import endpoints

__all__ = [
    "TALOS_API_PORT",
    "TrustdPart",
    "make_config_renderer",
    "make_trust_checker",
    "san_guard",
    "telemetry_suffix",
]

log = logging.getLogger(__name__)

TALOS_API_PORT = 50000
TRUST_CHECK_TIMEOUT_S = 3.0


def make_config_renderer(
    store: Store, *, extra: bytes = b""
) -> Callable[[MachineRecord, ClusterRecord], Awaitable[bytes]]:
    """The web layer's config renderer: render and validate one machine's config now.

    `extra` (telemetry_suffix) is appended to every config of a cluster that does not
    opt out (`telemetry: false` in its spec).
    """

    async def render(machine: MachineRecord, cluster: ClusterRecord) -> bytes:
        text = await render_machine_config(store, machine, cluster)
        if extra and cluster.spec.get("telemetry", True) is not False:
            # Appended, so the Talos-generated documents above stay byte-identical.
            text += extra
        return text

    return render


def telemetry_suffix(settings: Settings) -> bytes:
    """EventSinkConfig + KmsgLogConfig pointing at this daemon (empty when telemetry is off)."""
    if not settings.telemetry.enabled:
        return b""
    http_host = settings.http.host_port[0]
    public_host = urlsplit(settings.http.base_url).hostname or http_host
    sink, logs = endpoints(settings.telemetry, http_host, public_host)
    return telemetry_documents(sink, logs).encode()


async def _bundles(store: Store) -> list[tuple[str, SecretsBundle]]:
    found = []
    for cluster in await store.list_clusters():
        if not cluster.has_secrets:
            continue
        try:
            found.append((cluster.name, await load_secrets(store, cluster.name)))
        except ConfigRenderError as exc:
            log.warning("trustd skips cluster %s: %s", cluster.name, exc)
    return found


class TrustdPart:
    """trustd for the clusters with secrets (nothing runs without any); a daemon part."""

    def __init__(
        self,
        settings: TrustdSettings,
        store: Store,
        machines: Callable[[], MachineIndex],
        events: EventSink,
    ) -> None:
        self._settings = settings
        self._store = store
        self._machines = machines
        self._events = events
        self.server: TrustdServer | None = None

    async def start(self) -> None:
        """Load the bundles from the store and listen."""
        settings = self._settings
        bundles = await _bundles(self._store) if settings.enabled else []
        if not bundles:
            if settings.enabled:
                log.info("trustd not started: no cluster has a secrets bundle yet")
            return
        host, port = settings.host_port
        if len(bundles) > 1:
            log.warning(
                "trustd: %d clusters have secrets; presenting %s's identity (Talos sends no server name)",
                len(bundles),
                bundles[0][0],
            )
        clusters = await self._store.list_clusters()
        names = sorted({host, *(_endpoint_host(c.endpoint) for c in clusters)} - {"0.0.0.0", ""})
        resolver = StaticResolver.from_bundles([b for _, b in bundles], names, datetime.now(UTC))
        # The cluster's own certSANs go into every machine's config (machine.certSANs), so
        # every worker asks for them: the operator declared them, they are not foreign.
        declared = {str(san) for c in clusters for san in c.spec.get("certSANs", ())}
        # gRPC reports a failed bind from C on stderr and as a bare RuntimeError: ask first.
        check_tcp_bindable("trustd.listen", settings.listen, host, port)
        try:
            guard = san_guard(self._machines, self._events, declared)
            self.server = await start_trustd(host, port, resolver, guard=guard)
        except RuntimeError as exc:
            raise StartupError("trustd.listen", settings.listen, str(exc)) from exc

    async def stop(self) -> None:
        """Stop listening (one second of grace for calls in flight)."""
        if self.server is not None:
            await self.server.stop(grace=1.0)
            self.server = None


def san_guard(
    machines: Callable[[], MachineIndex], events: EventSink, declared: Collection[str] = ()
) -> SanGuard:
    """Refuse SANs naming another inventory machine's address; record every decision.

    `declared`: the clusters' own certSANs, which every machine's config carries.
    """

    def guard(peer: str, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]) -> str | None:
        inventory = [m.ip for m in machines().all() if m.ip and m.ip not in declared]
        foreign = foreign_addresses(ip_addresses, peer, inventory)
        data = {"peer": peer, "dns_names": list(dns_names), "ip_addresses": list(ip_addresses)}
        if foreign:
            reason = "CSR names another machine's address: " + ", ".join(foreign)
            events.emit(Event("trustd.refused", utcnow(), severity=Severity.ALERT, message=reason, data=data))
            return reason
        events.emit(Event("trustd.signed", utcnow(), message=f"certificate for {peer}", data=data))
        return None

    return guard


def _endpoint_host(endpoint: str) -> str:
    rest = endpoint.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0].strip("[]/")


def make_trust_checker(store: Store) -> Callable[[MachineRecord], Awaitable[TrustVerdict]]:
    """The reconciler's trust question: is the node's API certificate one of our OS CA's."""

    async def check(machine: MachineRecord) -> TrustVerdict:
        if machine.cluster is None:
            return TrustVerdict(ok=False, reason="machine has no cluster")
        address = await _config_source(store, machine) or machine.ip or await _leased_address(store, machine)
        if address is None:
            return TrustVerdict(ok=False, reason="no known address (no config fetch, static IP or lease)")
        try:
            bundle = await load_secrets(store, machine.cluster)
        except ConfigRenderError as exc:
            return TrustVerdict(ok=False, reason=str(exc))
        result = await check_trusted(address, TALOS_API_PORT, bundle.os.crt, address, TRUST_CHECK_TIMEOUT_S)
        return TrustVerdict(ok=result.ok, reason=result.reason)

    return check


async def _config_source(store: Store, machine: MachineRecord) -> str | None:
    """The address the machine fetched its config from: where it really is.

    Proxy DHCP hands out addresses we never see, and an inventory IP may be stale.
    """
    for event in await store.list_events(machine=machine.name, kind="config.served", limit=1):
        source = event.data.get("source")
        if isinstance(source, str) and source:
            return source
    return None


async def _leased_address(store: Store, machine: MachineRecord) -> str | None:
    for lease in await store.list_leases():
        if lease["mac"] in machine.macs and lease["state"] == "bound":
            return str(lease["ip"])
    return None
