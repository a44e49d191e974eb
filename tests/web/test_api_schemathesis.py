"""Schemathesis against the live server: no 5xx, responses match the OpenAPI document, auth enforced."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from webenv import API_TOKEN, MAC1, MAC2, Env, FakePower, add_asset_set, add_cluster, add_lease, add_machine

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "negative_data_rejection,ignored_auth,use_after_free,ensure_resource_availability"
)


async def run_schemathesis(env: Env, *extra: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "run",
        f"{env.api}/api/v1/openapi.json",
        "--url",
        env.api,
        "--checks",
        CHECKS,
        "--max-examples",
        "40",
        "--request-timeout",
        "10",
        "--seed",
        "1",
        "--no-color",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(env.state_dir), "SCHEMATHESIS_TELEMETRY": "false"},
        cwd=str(env.state_dir),
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.slow
async def test_schemathesis_with_token(env_any: Env) -> None:
    env = env_any
    await add_asset_set(env)
    await add_asset_set(env, "spare")
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1])
    await add_machine(env.store, "m2", [MAC2], state="Provisioned", installed=True)
    await add_lease(env.store, "10.77.0.100", MAC1, "m1")
    await env.refresh()
    env.rt.power = FakePower({"m1", "m2"})
    code, out = await run_schemathesis(env, "--header", f"Authorization: Bearer {API_TOKEN}")
    assert code == 0, out[-6000:]


@pytest.mark.slow
async def test_schemathesis_without_token_sees_only_401(env: Env) -> None:
    await add_cluster(env.store)
    await add_machine(env.store, "m1", [MAC1])
    code, out = await run_schemathesis(env)
    assert code == 0, out[-6000:]
    statuses = {e.kind for e in env.events.events}
    assert "api.change" not in statuses
