"""The OpenAPI 3.0 document of /api/v1, served at /api/v1/openapi.json (no auth needed).

It is written next to the handlers and checked against them by a schemathesis run over
the live server (tests/web/test_api_schemathesis.py); docs/api.md is generated from it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from provisioner.events import Severity
from provisioner.model import MachineState
from provisioner.power.base import REASONS
from provisioner.web.api.common import MAX_ID, NAME_RE
from provisioner.web.protocols import POWER_ACTIONS

__all__ = ["document", "routes"]

Schema = dict[str, Any]
NAME_PATTERN = NAME_RE.pattern
ASSET_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"


def _s(kind: str, *, nullable: bool = False, **more: Any) -> Schema:  # noqa: ANN401
    out: Schema = {"type": kind, **more}
    if nullable:
        out["nullable"] = True
    return out


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Schema], *, required: list[str] | None = None, nullable: bool = False) -> Schema:
    out: Schema = {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }
    if nullable:
        out["nullable"] = True
    return out


def _items(schema: str, *, paged: bool = False) -> Schema:
    props: dict[str, Schema] = {"items": {"type": "array", "items": _ref(schema)}}
    if paged:
        props["next_before"] = _s("integer", nullable=True)
    return _obj(props)


_STR_N = _s("string", nullable=True)
_TIME_N = _s("string", nullable=True, format="date-time")
_ANY_OBJ: Schema = {"type": "object", "additionalProperties": True}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": _s("string"), "detail": _s("string")}),
    "BmcError": {
        **_obj(
            {
                "error": _s("string"),
                "detail": _s("string"),
                "reason": _s("string", enum=sorted(set(REASONS.values()))),
                "bmc": _s("string"),
                "check": {"type": "array", "items": _s("string")},
            },
            required=["error", "detail", "reason"],
        ),
        "description": (
            "A failed BMC call (502) or a bug in the power service (500, `power-internal`). "
            "`reason`: `bmc-auth-refused` the BMC refused the user name, password or privilege; "
            "`bmc-unreachable` no answer at all; `bmc-timeout` the BMC started answering but did "
            "not finish within `[power] timeout_s`, or a previous call to it is still running; "
            "`bmc-unsupported` the BMC lacks the operation or option; `bmc-insecure` the BMC "
            "offered only ciphers we refuse; `bmc-protocol` an error answer or garbage. "
            "`bmc` is `driver address:port` (never the user or password); `check` lists the "
            "machine's inventory `bmc:` fields to look at. Every BMC failure is 502 and "
            "`reason` tells them apart (see docs/power.md)."
        ),
    },
    "Bmc": _obj(
        {
            "driver": _s("string"),
            "address": _s("string"),
            "port": _s("integer", nullable=True),
            "username": _s("string"),
            "password_ref": _s("string"),
            "has_password": _s("boolean"),
            "options": _ANY_OBJ,
        },
        nullable=True,
    ),
    "Machine": _obj(
        {
            "name": _s("string"),
            "macs": {"type": "array", "items": _s("string")},
            "cluster": _STR_N,
            "role": _s("string"),
            "uuid": _STR_N,
            "serial": _STR_N,
            "ip": _STR_N,
            "hostname": _STR_N,
            "install_disk": _STR_N,
            "arch": _s("string"),
            "labels": _ANY_OBJ,
            "spec": _ANY_OBJ,
            "state": _s("string", enum=[s.value for s in MachineState]),
            "desired": _s("string"),
            "state_reason": _s("string"),
            "state_since": _TIME_N,
            "attempts": _s("integer"),
            "installed": _s("boolean"),
            "owner": _STR_N,
            "first_seen": _TIME_N,
            "last_seen": _TIME_N,
            "bmc": _ref("Bmc"),
        }
    ),
    "Cluster": _obj(
        {
            "name": _s("string"),
            "talos_version": _s("string"),
            "kubernetes_version": _s("string"),
            "endpoint": _s("string"),
            "asset_set": _STR_N,
            "spec": _ANY_OBJ,
            "has_secrets": _s("boolean"),
        }
    ),
    "AssetSet": _obj(
        {
            "name": _s("string"),
            "arch": _s("string"),
            "kernel_sha256": _s("string"),
            "kernel_size": _s("integer"),
            "initramfs_sha256": _s("string"),
            "initramfs_size": _s("integer"),
            "cmdline": _s("string"),
            "source": _ANY_OBJ,
            "created_at": _TIME_N,
        }
    ),
    "AssetSetDetail": _obj(
        {"asset_set": _ref("AssetSet"), "used_by": {"type": "array", "items": _s("string")}}
    ),
    "Event": _obj(
        {
            "id": _s("integer"),
            "at": _s("string", format="date-time"),
            "kind": _s("string"),
            "machine": _STR_N,
            "severity": _s("string"),
            "actor": _s("string"),
            "message": _s("string"),
            "data": _ANY_OBJ,
        }
    ),
    "Lease": _obj(
        {
            "ip": _s("string"),
            "mac": _s("string"),
            "hostname": _s("string"),
            "state": _s("string"),
            "expires_at": _TIME_N,
            "machine": _STR_N,
        }
    ),
    "Discovered": _obj(
        {
            "mac": _s("string"),
            "uuid": _STR_N,
            "serial": _STR_N,
            "arch": _STR_N,
            "vendor_class": _s("string"),
            "source": _s("string"),
            "seen_count": _s("integer"),
            "first_seen": _s("string", format="date-time"),
            "last_seen": _s("string", format="date-time"),
        }
    ),
    "Desired": _obj({"machine": _s("string"), "desired": _s("string")}),
    "Released": _obj({"machine": _s("string"), "released": _s("boolean")}),
    "PowerRequest": {
        "oneOf": [
            {
                "type": "object",
                "properties": {"action": _s("string", enum=[a for a in POWER_ACTIONS if a != "bootdev"])},
                "required": ["action"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {
                    "action": _s("string", enum=["bootdev"]),
                    "device": _s("string", enum=["pxe", "disk"]),
                    "persistent": _s("boolean"),
                },
                "required": ["action", "device"],
                "additionalProperties": False,
            },
        ]
    },
    "PowerResult": _obj({"machine": _s("string"), "action": _s("string"), "result": _ANY_OBJ}),
    "MachineList": _items("Machine"),
    "ClusterList": _items("Cluster"),
    "AssetSetList": _items("AssetSet"),
    "EventPage": _items("Event", paged=True),
    "LogLine": _obj(
        {
            "received": _s("number"),
            "time": _s("string"),
            "level": _s("string"),
            "facility": _s("string"),
            "priority": _s("string"),
            "seq": _s("integer", nullable=True),
            "msg": _s("string"),
        }
    ),
    "LogPage": _obj({"items": {"type": "array", "items": _ref("LogLine")}, "total": _s("integer")}),
    "LeaseList": _items("Lease"),
    "DiscoveredList": _items("Discovered"),
}

_ERR = {"content": {"application/json": {"schema": _ref("Error")}}}
_BMC_ERR = {"content": {"application/json": {"schema": _ref("BmcError")}}}
_ERRORS = {
    "400": "invalid parameter or body",
    "401": "missing or invalid bearer token",
    "404": "no such object",
    "409": "conflict (in use, no BMC)",
    "500": "a bug in the power service (reason `power-internal`)",
    "502": "the BMC call failed (`reason` says why)",
    "503": "the service is not running (power)",
}


def _op(summary: str, ok: str, schema: str | None, errors: tuple[str, ...], **more: Any) -> Schema:  # noqa: ANN401
    responses: Schema = {}
    if schema is None:
        responses[ok] = {"description": summary}
    else:
        responses[ok] = {"description": summary, "content": {"application/json": {"schema": _ref(schema)}}}
    for code in ("400", "401", *errors):
        responses[code] = {"description": _ERRORS[code], **(_BMC_ERR if code in {"500", "502"} else _ERR)}
    return {"summary": summary, "responses": responses, **more}


def _ndjson(op: Schema, schema: str) -> Schema:
    """`op` answering 200 with a stream of newline-delimited JSON `schema` objects."""
    op["responses"]["200"]["content"] = {"application/x-ndjson": {"schema": _ref(schema)}}
    return op


def _path_name(pattern: str = NAME_PATTERN) -> Schema:
    return {"name": "name", "in": "path", "required": True, "schema": _s("string", pattern=pattern)}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_LIMIT = _query("limit", _s("integer", minimum=1, maximum=1000), "page size (default 100)")
_BEFORE = _query(
    "before", _s("integer", minimum=1, maximum=MAX_ID), "return events older than this id (next_before)"
)
_EMPTY_BODY = {
    "required": False,
    "content": {
        "application/json": {"schema": {"type": "object", "properties": {}, "additionalProperties": False}}
    },
}

PATHS: dict[str, Schema] = {
    "/api/v1/machines": {
        "get": _op(
            "List machines",
            "200",
            "MachineList",
            (),
            parameters=[
                _query("state", _s("string", enum=[s.value for s in MachineState]), "only this state"),
                _query("cluster", _s("string"), "only this cluster"),
            ],
        )
    },
    "/api/v1/machines/{name}": {
        "get": _op("Show one machine", "200", "Machine", ("404",), parameters=[_path_name()])
    },
    "/api/v1/machines/{name}/events": {
        "get": _op(
            "A machine's events, newest first",
            "200",
            "EventPage",
            ("404",),
            parameters=[_path_name(), _LIMIT, _BEFORE],
        )
    },
    "/api/v1/machines/{name}/logs": {
        "get": _op(
            "The node's kernel log (Talos talos.logging.kernel / KmsgLogConfig), oldest first",
            "200",
            "LogPage",
            ("404",),
            parameters=[
                _path_name(),
                _query("limit", _s("integer", minimum=1, maximum=1_000_000), "newest lines (default 500)"),
            ],
        )
    },
    "/api/v1/machines/{name}/logs/stream": {
        "get": _ndjson(
            _op(
                "Follow the kernel log: NDJSON LogLine objects, the newest `limit` first, "
                "then each new line as it arrives, until the client leaves or `max_s` passes",
                "200",
                None,
                ("404",),
                parameters=[
                    _path_name(),
                    _query("limit", _s("integer", minimum=0, maximum=1_000_000), "lines of history (100)"),
                    _query("max_s", _s("integer", minimum=1, maximum=86_400), "end the stream after (3600)"),
                ],
            ),
            "LogLine",
        )
    },
    "/api/v1/machines/{name}/provision": {
        "post": _op(
            "Ask for the machine to be provisioned (sets desired=provisioned)",
            "202",
            "Desired",
            ("404",),
            parameters=[_path_name()],
            requestBody=_EMPTY_BODY,
        )
    },
    "/api/v1/machines/{name}/deprovision": {
        "post": _op(
            "Ask for the machine to be deprovisioned (sets desired=deprovisioned)",
            "202",
            "Desired",
            ("404",),
            parameters=[_path_name()],
            requestBody=_EMPTY_BODY,
        )
    },
    "/api/v1/machines/{name}/reprovision": {
        "post": _op(
            "Ask for the machine to be deprovisioned, then provisioned again (sets desired=reprovision)",
            "202",
            "Desired",
            ("404",),
            parameters=[_path_name()],
            requestBody=_EMPTY_BODY,
        )
    },
    "/api/v1/machines/{name}/release": {
        "post": _op(
            "Unfreeze a provisioning window frozen by a spoofing alert (released=false: it was not frozen)",
            "200",
            "Released",
            ("404",),
            parameters=[_path_name()],
            requestBody=_EMPTY_BODY,
        )
    },
    "/api/v1/machines/{name}/power": {
        "post": _op(
            "Run a power action through the machine's BMC",
            "200",
            "PowerResult",
            ("404", "409", "500", "502", "503"),
            parameters=[_path_name()],
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("PowerRequest")}},
            },
        )
    },
    "/api/v1/clusters": {"get": _op("List clusters", "200", "ClusterList", ())},
    "/api/v1/clusters/{name}": {
        "get": _op(
            "Show one cluster (never its secrets)", "200", "Cluster", ("404",), parameters=[_path_name()]
        )
    },
    "/api/v1/assets": {"get": _op("List boot asset sets", "200", "AssetSetList", ())},
    "/api/v1/assets/{name}": {
        "get": _op(
            "Show an asset set and who uses it",
            "200",
            "AssetSetDetail",
            ("404",),
            parameters=[_path_name(ASSET_PATTERN)],
        ),
        "delete": _op(
            "Delete an asset set (409 while a cluster or machine names it)",
            "204",
            None,
            ("404", "409"),
            parameters=[_path_name(ASSET_PATTERN)],
        ),
    },
    "/api/v1/events": {
        "get": _op(
            "Events, newest first, filterable and paginated",
            "200",
            "EventPage",
            (),
            parameters=[
                _query("machine", _s("string", pattern=NAME_PATTERN), "only this machine"),
                _query(
                    "kind",
                    _s("string", minLength=1, maxLength=64, pattern=r"^[ -~]+$"),
                    "event kind; a trailing dot selects a family (dhcp.)",
                ),
                _query("severity", _s("string", enum=[s.value for s in Severity]), "only this severity"),
                _query("since", _s("string", format="date-time"), "only events at or after this time"),
                _LIMIT,
                _BEFORE,
            ],
        )
    },
    "/api/v1/leases": {"get": _op("DHCP leases", "200", "LeaseList", ())},
    "/api/v1/discovered": {"get": _op("Machines seen but not in the inventory", "200", "DiscoveredList", ())},
}


def document(server_url: str = "/") -> Schema:
    """The OpenAPI document."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "provisioner API",
            "version": "1",
            "description": (
                "Bare-metal provisioning for Talos Linux. Every request needs "
                "`Authorization: Bearer <state_dir/api-token>`; every change is an audit event."
            ),
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


async def serve(_request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json."""
    return web.json_response(document())


def routes() -> list[web.RouteDef]:
    """This module's routes."""
    return [web.get("/api/v1/openapi.json", serve)]
