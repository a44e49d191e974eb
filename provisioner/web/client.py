"""A small synchronous client of the daemon's REST API, for the CLI.

`ApiClient.from_settings(settings)` reads the API address (`[api] listen`), the bearer token
(`state_dir/api-token`) and, when the API speaks TLS, the certificate to pin (`[api]
tls_cert`, or the one the daemon generated into the state directory): the same settings
the daemon uses.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

from provisioner.settings import Settings
from provisioner.web.auth import token_path
from provisioner.web.tls import client_context

__all__ = ["ApiClient", "ApiError", "DaemonUnreachableError"]

DEFAULT_TIMEOUT_S = 30.0


class ApiError(Exception):
    """The daemon answered with an error status."""

    def __init__(self, status: int, error: str, detail: str, *, reason: str = "", bmc: str = "") -> None:
        super().__init__(f"{status} {error}: {detail}" if detail else f"{status} {error}")
        self.status = status
        self.error = error
        self.detail = detail
        self.reason = reason
        """The machine-readable reason, when the API gives one (e.g. `bmc-auth-refused`)."""
        self.bmc = bmc


class DaemonUnreachableError(Exception):
    """No daemon answered at the configured address (or no API token exists yet)."""


class ApiClient:
    """Calls /api/v1 with a bearer token; every method returns decoded JSON."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._ssl = ssl_context

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = DEFAULT_TIMEOUT_S) -> ApiClient:
        """A client for the daemon these settings describe."""
        path = token_path(settings.state_dir)
        try:
            token = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            msg = f"no API token at {path}: start the daemon (provisioner serve) first"
            raise DaemonUnreachableError(msg) from None
        context = None
        if settings.api.uses_tls:
            try:
                context = client_context(settings)
            except (OSError, ValueError, ssl.SSLError) as exc:
                msg = f"cannot read the API certificate to pin ({exc}): start the daemon first"
                raise DaemonUnreachableError(msg) from None
        return cls(settings.api.base_url, token, timeout=timeout, ssl_context=context)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, **query: Any) -> Any:  # noqa: ANN401
        """One call; raises ApiError on 4xx/5xx and DaemonUnreachableError if nobody answers."""
        params = {k: v for k, v in query.items() if v is not None}
        url = f"{self.base_url}/api/v1{path}" + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) URL from settings
        req.add_header("Authorization", f"Bearer {self._token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self._timeout, context=self._ssl) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            msg = f"cannot reach the daemon at {self.base_url}: {exc}"
            raise DaemonUnreachableError(msg) from None
        return json.loads(raw) if raw else None

    # -- machines ---------------------------------------------------------------------

    def machines(self, *, state: str | None = None, cluster: str | None = None) -> list[dict[str, Any]]:
        """Every machine (optionally filtered)."""
        return list(self.request("GET", "/machines", state=state, cluster=cluster)["items"])

    def machine(self, name: str) -> dict[str, Any]:
        """One machine."""
        return dict(self.request("GET", f"/machines/{_seg(name)}"))

    def machine_events(self, name: str, *, limit: int = 100, before: int | None = None) -> dict[str, Any]:
        """One page of a machine's events (`items`, `next_before`)."""
        return dict(self.request("GET", f"/machines/{_seg(name)}/events", limit=limit, before=before))

    def provision(self, name: str) -> dict[str, Any]:
        """Set desired=provisioned."""
        return dict(self.request("POST", f"/machines/{_seg(name)}/provision", {}))

    def deprovision(self, name: str) -> dict[str, Any]:
        """Set desired=deprovisioned."""
        return dict(self.request("POST", f"/machines/{_seg(name)}/deprovision", {}))

    def reprovision(self, name: str) -> dict[str, Any]:
        """Set desired=reprovision (deprovision, then provision again)."""
        return dict(self.request("POST", f"/machines/{_seg(name)}/reprovision", {}))

    def release(self, name: str) -> dict[str, Any]:
        """Unfreeze a provisioning window frozen by a spoofing alert."""
        return dict(self.request("POST", f"/machines/{_seg(name)}/release", {}))

    def power(
        self, name: str, action: str, *, device: str | None = None, persistent: bool | None = None
    ) -> dict[str, Any]:
        """A power action (on, off, cycle, reset, status, bootdev)."""
        body: dict[str, Any] = {"action": action}
        if device is not None:
            body["device"] = device
        if persistent is not None:
            body["persistent"] = persistent
        return dict(self.request("POST", f"/machines/{_seg(name)}/power", body))

    # -- the rest ---------------------------------------------------------------------

    def clusters(self) -> list[dict[str, Any]]:
        """Every cluster."""
        return list(self.request("GET", "/clusters")["items"])

    def cluster(self, name: str) -> dict[str, Any]:
        """One cluster."""
        return dict(self.request("GET", f"/clusters/{_seg(name)}"))

    def assets(self) -> list[dict[str, Any]]:
        """Every asset set."""
        return list(self.request("GET", "/assets")["items"])

    def delete_asset(self, name: str) -> None:
        """Delete an asset set (ApiError 409 while in use)."""
        self.request("DELETE", f"/assets/{_seg(name)}")

    def leases(self) -> list[dict[str, Any]]:
        """Every DHCP lease."""
        return list(self.request("GET", "/leases")["items"])

    def discovered(self) -> list[dict[str, Any]]:
        """Machines seen but not in the inventory."""
        return list(self.request("GET", "/discovered")["items"])

    def machine_logs(self, name: str, *, limit: int = 500) -> dict[str, Any]:
        """The node's newest kernel log lines (`items`, oldest first) and the ring's `total`."""
        return dict(self.request("GET", f"/machines/{_seg(name)}/logs", limit=limit))

    def follow_logs(self, name: str, *, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Kernel log lines as they arrive (NDJSON stream); ends when the daemon ends it."""
        url = f"{self.base_url}/api/v1/machines/{_seg(name)}/logs/stream?" + urlencode(
            {"limit": limit, "max_s": 86_400}
        )
        req = urllib.request.Request(url, method="GET")  # noqa: S310 - http(s) URL from settings
        req.add_header("Authorization", f"Bearer {self._token}")
        try:
            # No read timeout: a quiet node sends nothing for a long time.
            with urllib.request.urlopen(req) as resp:  # noqa: S310
                # read1, not line iteration: over chunked encoding the buffered reader
                # waits for a full buffer, which a quiet node may take hours to fill.
                pending = b""
                while chunk := resp.read1(65536):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for raw in lines:
                        if raw.strip():
                            yield dict(json.loads(raw))
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            msg = f"cannot reach the daemon at {self.base_url}: {exc}"
            raise DaemonUnreachableError(msg) from None

    def events(self, **filters: Any) -> dict[str, Any]:  # noqa: ANN401
        """One page of events: machine, kind, severity, since, before, limit."""
        return dict(self.request("GET", "/events", **filters))


def _seg(name: str) -> str:
    return quote(name, safe="")


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(
        exc.code,
        str(body.get("error", exc.reason)),
        str(body.get("detail", "")),
        reason=str(body.get("reason", "")),
        bmc=str(body.get("bmc", "")),
    )
