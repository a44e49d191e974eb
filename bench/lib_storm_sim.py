"""The storm's simulated rack: N machines and their Redfish BMCs in one asyncio process.

Run inside the client namespace: `python bench/lib_storm_sim.py PLAN.json OUT.json`.
PLAN names the server, the machines (name, mac, uuid, serial, ip) and the options.
With `"bmc": true` each machine waits for `ComputerSystem.Reset On` on its Redfish system
(`/redfish/v1/Systems/<name>`, one HTTP server for all); otherwise (the floor) all start
at once. A machine then boots like PXE firmware + iPXE + a Talos node: DHCP (relayed, or
broadcast for the directly attached share), TFTP of the iPXE binary, iPXE's DHCP,
/boot.ipxe, its own script, kernel, initramfs, the config, trustd (workers, when the
config has a token) and a TLS certificate on its own address, port 50000. SIGTERM
(or every machine done, for the floor) writes OUT: per-stage timings and failures.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib_storm_node import certificate
from lib_storm_wire import DhcpPort, dora, tftp_get

RELAY_IP = "10.88.0.2"


class Rack:
    """Every simulated machine's state and the measurements."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.server: str = plan["server"]
        self.machines = {m["name"]: m for m in plan["machines"]}
        self.power = dict.fromkeys(self.machines, "Off")
        self.stages: dict[str, dict[str, float]] = {n: {} for n in self.machines}
        self.failures: dict[str, str] = {}
        self.requests: dict[str, int] = {
            "redfish": 0,
            "dhcp": 0,
            "tftp": 0,
            "http": 0,
            "trustd": 0,
            "trust_check": 0,
        }
        self.tasks: set[asyncio.Task[None]] = set()
        self.relay = DhcpPort()
        self.direct = DhcpPort()
        self.t0 = time.monotonic()
        self.done = asyncio.Event()
        self.finished = 0
        self.servers: list[asyncio.Server] = []

    def power_on(self, name: str) -> None:
        if self.power[name] == "On":
            return
        self.power[name] = "On"
        task = asyncio.get_running_loop().create_task(self.boot(self.machines[name]))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def mark(self, name: str, stage: str) -> None:
        self.stages[name][stage] = time.monotonic() - self.t0

    async def boot(self, m: dict[str, Any]) -> None:
        name = m["name"]
        lo, hi = self.plan["firmware_delay"]
        self.mark(name, "power_on")
        await asyncio.sleep(random.uniform(lo, hi))
        self.mark(name, "firmware")
        stage = "dhcp"
        try:
            mac = bytes.fromhex(m["mac"].replace(":", ""))
            direct = m["direct"]
            port = self.direct if direct else self.relay
            target = ("255.255.255.255", 67) if direct else (self.server, 67)
            giaddr = "0.0.0.0" if direct else RELAY_IP
            xid = m["index"] << 8
            ack = await dora(
                port, target, xid=xid, mac=mac, uuid=m["uuid"], giaddr=giaddr, ipxe=False, broadcast=direct
            )
            self.requests["dhcp"] += 2
            self.mark(name, stage)
            if ack.yiaddr != m["ip"]:
                msg = f"leased {ack.yiaddr}, inventory says {m['ip']}"
                raise RuntimeError(msg)  # noqa: TRY301 - recorded by stage below, like every failure
            stage = "tftp"
            await tftp_get(m["ip"], ack.siaddr if ack.siaddr != "0.0.0.0" else self.server, ack.bootfile)
            self.requests["tftp"] += 1
            self.mark(name, stage)
            stage = "dhcp_ipxe"
            ack = await dora(
                port, target, xid=xid | 1, mac=mac, uuid=m["uuid"], giaddr=giaddr, ipxe=True, broadcast=direct
            )
            self.requests["dhcp"] += 2
            self.mark(name, stage)
            stage = "http"
            await self.http_stages(m, ack.bootfile)
        except Exception as err:
            if stage == "http":  # the first HTTP stage not yet marked done is the one that failed
                stage = next(
                    s
                    for s in ("scripts", "assets", "config", "trustd", "serving")
                    if s not in self.stages[name]
                )
            self.failures[name] = f"{stage}: {type(err).__name__}: {err}"[:300]
            with Path(self.plan["out"] + ".failed").open("a") as fh:
                fh.write(f"{name} {self.failures[name]}\n")
        finally:
            self.finished += 1
            if not self.plan["bmc"] and self.finished == len(self.machines):
                self.done.set()

    async def http_stages(self, m: dict[str, Any], boot_url: str) -> None:
        name = m["name"]
        conn = aiohttp.TCPConnector(local_addr=(m["ip"], 0), limit=2)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:

            async def get(url: str) -> bytes:
                self.requests["http"] += 1
                async with http.get(url) as resp:
                    resp.raise_for_status()
                    return await resp.read()

            async def drain(url: str) -> int:
                self.requests["http"] += 1
                size = 0
                async with http.get(url) as resp:
                    resp.raise_for_status()
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        size += len(chunk)
                return size

            script = (await get(boot_url)).decode()
            chain = re.search(r"^chain\s+(?:--\S+\s+)*(\S+)", script, re.MULTILINE)
            if chain is None:
                msg = "no chain in boot.ipxe"
                raise RuntimeError(msg)
            variables = {
                "${mac:hexhyp}": m["mac"].replace(":", "-"), "${pv-nics}": m["mac"].replace(":", "-"),
                "${uuid}": m["uuid"], "${serial:uristring}": m["serial"], "${buildarch}": "i386",
                "${platform}": "pcbios",
            }  # fmt: skip
            url = chain.group(1)
            for var, value in variables.items():
                url = url.replace(var, value)
            script = (await get(url)).decode()
            kernel = re.search(r"^kernel\s+(\S+)\s+(.*)$", script, re.MULTILINE)
            initrd = re.search(r"^initrd\s+(?:--name \S+\s+)?(\S+)", script, re.MULTILINE)
            if kernel is None or initrd is None:
                msg = f"no kernel/initrd in the script: {script[:200]!r}"
                raise RuntimeError(msg)
            self.mark(name, "scripts")
            await drain(kernel.group(1))
            await drain(initrd.group(1))
            self.mark(name, "assets")
            cfg = re.search(r"talos\.config=(\S+)", kernel.group(2))
            if cfg is None:
                msg = "no talos.config= on the kernel command line"
                raise RuntimeError(msg)
            # Talos expands ${uuid} and ${mac} in talos.config (pkg/download, platform metal).
            config_url = unquote(cfg.group(1)) if "%24%7B" in cfg.group(1) else cfg.group(1)
            config_url = config_url.replace("${uuid}", m["uuid"]).replace("${mac}", m["mac"])
            config = await get(config_url)
            self.mark(name, "config")
        cert, key, kind = await certificate(config, m, self.plan.get("trustd", ""))
        if kind == "trustd":
            self.requests["trustd"] += 1
            self.mark(name, "trustd")
        if cert is None:
            return  # the floor: a static config without machine.ca, nothing to serve
        await self.serve_cert(m, cert, key)

    async def serve_cert(self, m: dict[str, Any], cert: bytes, key: bytes) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "c.pem").write_bytes(cert)
            (Path(tmp) / "k.pem").write_bytes(key)
            ctx.load_cert_chain(Path(tmp) / "c.pem", Path(tmp) / "k.pem")

        async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.requests["trust_check"] += 1
            self.stages[m["name"]].setdefault("trust_check", time.monotonic() - self.t0)
            w.close()

        server = await asyncio.start_server(handle, m["ip"], 50000, ssl=ctx)
        self.servers.append(server)
        self.mark(m["name"], "serving")

    # --- Redfish (the few resources sushy reads; DSP0266) ---------------------------------
    def redfish_app(self) -> web.Application:
        app = web.Application()
        r = app.router
        r.add_get("/redfish/v1/", self.rf_root)
        r.add_get("/redfish/v1", self.rf_root)
        r.add_get("/redfish/v1/Systems", self.rf_systems)
        r.add_get("/redfish/v1/Systems/{name}", self.rf_system)
        r.add_patch("/redfish/v1/Systems/{name}", self.rf_patch)
        r.add_post("/redfish/v1/Systems/{name}/Actions/ComputerSystem.Reset", self.rf_reset)
        return app

    async def rf_root(self, _req: web.Request) -> web.Response:
        self.requests["redfish"] += 1
        return web.json_response({
            "@odata.id": "/redfish/v1/", "Id": "RootService", "Name": "storm", "RedfishVersion": "1.6.0",
            "UUID": "00000000-0000-4000-8000-000000000001", "Systems": {"@odata.id": "/redfish/v1/Systems"},
        })  # fmt: skip

    async def rf_systems(self, _req: web.Request) -> web.Response:
        self.requests["redfish"] += 1
        members = [{"@odata.id": f"/redfish/v1/Systems/{n}"} for n in self.machines]
        return web.json_response({"@odata.id": "/redfish/v1/Systems", "Name": "Systems",
                                  "Members": members, "Members@odata.count": len(members)})  # fmt: skip

    def _name(self, req: web.Request) -> str:
        name = req.match_info["name"]
        if name not in self.machines:
            raise web.HTTPNotFound
        return name

    async def rf_system(self, req: web.Request) -> web.Response:
        self.requests["redfish"] += 1
        name = self._name(req)
        return web.json_response({
            "@odata.id": f"/redfish/v1/Systems/{name}", "Id": name, "Name": name, "PowerState": self.power[name],
            "Boot": {"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": "Pxe",
                     "BootSourceOverrideMode": "Legacy",
                     "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd"]},
            "Actions": {"#ComputerSystem.Reset": {
                "target": f"/redfish/v1/Systems/{name}/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulShutdown", "ForceRestart"]}},
        })  # fmt: skip

    async def rf_patch(self, req: web.Request) -> web.Response:
        self.requests["redfish"] += 1
        self._name(req)
        await req.read()
        return web.Response(status=204)

    async def rf_reset(self, req: web.Request) -> web.Response:
        self.requests["redfish"] += 1
        name = self._name(req)
        kind = (await req.json()).get("ResetType")
        if kind in {"ForceOff", "GracefulShutdown"}:
            self.power[name] = "Off"
        elif kind == "ForceRestart":
            self.power[name] = "Off"
            self.power_on(name)
        else:
            self.power_on(name)
        return web.Response(status=204)

    def report(self) -> dict[str, Any]:
        return {"stages": self.stages, "failures": self.failures, "requests": self.requests,
                "dropped_dhcp": self.relay.dropped + self.direct.dropped}  # fmt: skip


async def main(plan_path: str, out_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    plan["out"] = out_path
    rack = Rack(plan)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: rack.relay, local_addr=(RELAY_IP, 67))
    await loop.create_datagram_endpoint(lambda: rack.direct, local_addr=("0.0.0.0", 68), allow_broadcast=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    runner = None
    if plan["bmc"]:
        runner = web.AppRunner(rack.redfish_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, RELAY_IP, plan["bmc_port"]).start()
    else:
        for name in rack.machines:
            rack.power_on(name)
    Path(out_path + ".ready").write_text("ready")
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(rack.done.wait())]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    Path(out_path).write_text(json.dumps(rack.report()))
    for server in rack.servers:
        server.close()
    if runner is not None:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
