"""/metrics: Prometheus text format from a registry of our own (never the global one).

What is exported:
- every service's plain counters (`WebRuntime.counters()`), generically, as
  `provisioner_<service>_<name>_total`;
- HTTP requests by route, method and status, and request latency by route;
- machines per lifecycle state (from the in-memory machine index);
- config fetches by outcome and refusals by reason; power calls and failures by action.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from provisioner.matching import MachineIndex
from provisioner.model import MachineState

__all__ = ["WebMetrics", "metric_name"]

_BAD = re.compile(r"[^a-zA-Z0-9_]")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def metric_name(*parts: str) -> str:
    """A valid Prometheus metric name from free-form parts."""
    return "_".join(_BAD.sub("_", p).strip("_").lower() for p in parts if p)


class _RuntimeCollector(Collector):
    """Renders service counters and the machine-state gauge at scrape time."""

    def __init__(
        self,
        counters: Callable[[], Mapping[str, Mapping[str, int]]],
        machines: Callable[[], MachineIndex],
    ) -> None:
        self._counters = counters
        self._machines = machines

    def collect(self) -> Iterator[Metric]:
        for service, values in sorted(self._counters().items()):
            for name, value in sorted(values.items()):
                # CounterMetricFamily appends `_total` itself.
                family = CounterMetricFamily(
                    metric_name("provisioner", service, name),
                    f"{service} counter {name}",
                )
                family.add_metric([], float(value))
                yield family
        states = GaugeMetricFamily("provisioner_machines", "Machines per lifecycle state", labels=["state"])
        counts = dict.fromkeys((s.value for s in MachineState), 0)
        for machine in self._machines().all():
            counts[machine.state.value] = counts.get(machine.state.value, 0) + 1
        for state, count in sorted(counts.items()):
            states.add_metric([state], float(count))
        yield states


class WebMetrics:
    """The web layer's metrics and its registry."""

    def __init__(
        self,
        counters: Callable[[], Mapping[str, Mapping[str, int]]],
        machines: Callable[[], MachineIndex],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "provisioner_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "provisioner_http_request_duration_seconds",
            "Time to produce the response head, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.config_fetches = Counter(
            "provisioner_config_fetches",
            "Config fetch attempts by outcome (served, refused, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.config_refusals = Counter(
            "provisioner_config_refusals",
            "Config fetches refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.power_calls = Counter(
            "provisioner_power_calls",
            "Power actions requested through the API",
            ["action"],
            registry=self.registry,
        )
        self.power_failures = Counter(
            "provisioner_power_failures", "Power actions that failed", ["action"], registry=self.registry
        )
        self.registry.register(_RuntimeCollector(counters, machines))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request (unknown methods share one label: clients choose them)."""
        self.requests.labels(route, method if method in _METHODS else "other", str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        """The exposition text."""
        return bytes(generate_latest(self.registry))

    async def handle(self, _request: web.Request) -> web.Response:
        """GET /metrics."""
        response = web.Response(body=self.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
