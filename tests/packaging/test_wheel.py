"""The built wheel, installed into a fresh virtualenv, is a working `provisioner`.

The rest of the suite imports the source tree (`pythonpath = ["."]`, editable install), so
it cannot notice a file the wheel leaves out. This test builds the wheel from a copy of the
repository, installs it with its dependencies into a new virtualenv (pip's cache makes that
quick), and from a directory outside the repository runs the installed command:
`inventory validate`, `inventory apply`, then `serve` with a temporary state directory,
which must answer /healthz and render /boot.ipxe and one machine's /ipxe from the packaged
templates.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# What a checkout may hold that is not part of the project (and would slow the copy).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "var",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    ".coverage*",
)

INVENTORY = """\
kind: Cluster
name: smoke
talosVersion: v1.13.0
kubernetesVersion: 1.33.0
endpoint: https://10.99.0.10:6443
assetSet: talos
installDisk: /dev/sda
---
kind: Machine
name: smoke-n1
cluster: smoke
role: controlplane
macs: [52:54:00:99:00:10]
uuid: 00000000-0000-4000-8000-525400990010
"""


def _env() -> dict[str, str]:
    """The caller's environment minus anything that would point back at the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    for key in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
        env.pop(key, None)
    return env


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from this repository installed; yields its bin/."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=_NOT_SOURCE)
    dist = base / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", dist, cwd=base)
    wheels = sorted(dist.glob("provisioner-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=base)
    _run(venv / "bin" / "python", "-m", "pip", "install", "-q", wheels[0], cwd=base)
    return venv / "bin"


def test_the_installed_package_is_not_the_source_tree(installed: Path, tmp_path: Path) -> None:
    code = "import provisioner, provisioner.templating as t; print(provisioner.__file__); print(t.packaged_templates())"
    out = _run(installed / "python", "-c", code, cwd=tmp_path).stdout.splitlines()
    site = installed.parent / "lib"
    assert Path(out[0]).is_relative_to(site), out
    assert Path(out[1]).is_relative_to(site), out
    names = sorted(p.name for p in (Path(out[1]) / "ipxe").iterdir())
    assert names == sorted(p.name for p in (REPO / "templates" / "ipxe").iterdir())


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - 127.0.0.1 only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_installed_command_validates_applies_and_serves(installed: Path, tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "provisioner.toml").write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        '[dhcp]\nmode = "off"\n'
        "[tftp]\nenabled = false\n"
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
        # telemetry on (its generated protobuf code must be in the wheel), on free ports
        f'[telemetry]\nevents_listen = "127.0.0.1:{free_port()}"\nlogs_listen = "127.0.0.1:{free_port()}"\n'
    )
    cli = installed / "provisioner"
    assert (
        "ok: 1 cluster(s), 1 machine(s)"
        in _run(cli, "inventory", "validate", "inventory.yaml", cwd=tmp_path).stdout
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(INVENTORY.replace("role: controlplane", "role: captain"))
    proc = subprocess.run(
        [str(cli), "inventory", "validate", str(bad)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "bad.yaml:" in proc.stdout + proc.stderr
    assert "2 added" in _run(cli, "inventory", "apply", "inventory.yaml", cwd=tmp_path).stdout

    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [str(cli), "serve"], cwd=tmp_path, env=_env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                status, body = _get(f"{base}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.2)
        assert status == 200
        health = json.loads(body)
        assert (health["status"], health["db"], health["machines"]) == ("ok", "ok", 1)

        status, boot = _get(f"{base}/boot.ipxe")
        assert status == 200
        assert boot.startswith("#!ipxe\n")
        assert f"chain --replace --autofree {base}/ipxe?mac=${{mac:hexhyp}}&nics=${{pv-nics}}" in boot

        status, script = _get(f"{base}/ipxe?mac=52-54-00-99-00-10&uuid=00000000-0000-4000-8000-525400990010")
        assert status == 200
        assert script.startswith("#!ipxe\n")
        assert "smoke-n1: state-Registered" in script

        # The web console's pages and static files come from the wheel too (docs/ui.md);
        # the console is on the operators' [api] listener.
        api = f"http://127.0.0.1:{api_port}"
        status, page = _get(f"{api}/ui/login")
        assert status == 200
        assert '<script src="/ui/static/ui.js" defer></script>' in page
        for name in ("ui.js", "ui.css"):
            status, text = _get(f"{api}/ui/static/{name}")
            assert status == 200
            assert text == (REPO / "templates" / "ui" / "static" / name).read_text()
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=20)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        log.close()
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()
