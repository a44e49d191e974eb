"""GET /tftp/{name}: first-stage binaries over HTTP for UEFI HTTP boot, allow-listed."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from provisioner.matching import MachineIndex
from provisioner.settings import Settings, TftpSettings
from provisioner.web.app import create_app
from provisioner.web.context import WebRuntime


async def test_serves_allow_listed_binaries_only(
    tmp_path: Path, sqlite_store: object, state_dir: Path
) -> None:

    from provisioner.events import MemoryEventSink

    root = tmp_path / "ipxe"
    root.mkdir()
    (root / "snponly.efi").write_bytes(b"MZ" + bytes(range(256)) * 40)
    (root / "notes.txt").write_text("not a boot file")
    (tmp_path / "secret").write_text("outside")
    (root / "ipxe.efi").symlink_to(tmp_path / "secret")
    settings = Settings(state_dir=state_dir, tftp=TftpSettings(ipxe_dir=root))
    rt = WebRuntime(
        settings=settings,
        store=sqlite_store,
        events=MemoryEventSink(),
        instance="t",
        machines=lambda: MachineIndex([]),
    )
    async with TestClient(TestServer(create_app(rt, api_token="x"))) as client:
        ok = await client.get("/tftp/snponly.efi")
        assert ok.status == 200
        assert await ok.read() == (root / "snponly.efi").read_bytes()
        for name in ("notes.txt", "ipxe.efi", "..%2Fsecret", "nope.efi"):
            refused = await client.get(f"/tftp/{name}")
            assert refused.status == 404, name
            assert "outside" not in await refused.text()
