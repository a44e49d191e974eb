"""`provisioner serve` start-up failures: one line naming the setting and value, exit 2.

Issue 11 item 4. Each case runs the real `provisioner serve` subprocess against a real
cause (an occupied port, a missing capability, an unknown interface, a state directory
under a regular file, PostgreSQL's port with nothing listening, a bad TOML value), with
the default log level so that held start-up log lines would show if they leaked. The
last test runs the daemon in-process to see that what started before the failure (the
HTTP and TFTP listeners, threads) is gone when the error arrives.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from provisioner.daemon import run_daemon
from provisioner.settings import load_settings
from provisioner.startup import StartupError

PROVISIONER = Path(sys.executable).with_name("provisioner")
SERVE_TIMEOUT_S = 60


def _free_tcp() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp_path: Path, **sections: str) -> tuple[Path, int]:
    """A loopback-only settings file; `sections` replace whole sections (or `top`)."""
    http_port = _free_tcp()
    parts = {
        "top": f"state_dir = {str(tmp_path / 'state')!r}",
        "http": f'[http]\nlisten = "127.0.0.1:{http_port}"',
        "tftp": f'[tftp]\nlisten_address = "127.0.0.1"\nport = {_free_udp()}',
        "dhcp": '[dhcp]\nmode = "off"',
        "trustd": "[trustd]\nenabled = false",
        "api": f'[api]\nlisten = "127.0.0.1:{_free_tcp()}"',
        # Off: its fixed default ports (4002/4003) would collide between parallel daemons.
        "telemetry": "[telemetry]\nenabled = false",
    }
    parts.update(sections)
    path = tmp_path / "provisioner.toml"
    path.write_text("\n\n".join(parts.values()) + "\n")
    return path, http_port


def _serve(config: Path, *prefix: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    return subprocess.run(
        [*prefix, str(PROVISIONER), "serve", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=SERVE_TIMEOUT_S,
        check=False,
    )


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The start-up failure contract: exit 2, stderr exactly one `error: ...` line."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_http_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config, _ = _config(tmp_path, http=f'[http]\nlisten = "127.0.0.1:{port}"')
        line = _one_line_error(_serve(config))
    assert line == f"error: http.listen 127.0.0.1:{port}: address already in use"


def test_api_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config, _ = _config(tmp_path, api=f'[api]\nlisten = "127.0.0.1:{port}"')
        line = _one_line_error(_serve(config))
    assert line == f"error: api.listen 127.0.0.1:{port}: address already in use"


def test_tftp_port_in_use_after_http_started(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config, http_port = _config(tmp_path, tftp=f'[tftp]\nlisten_address = "127.0.0.1"\nport = {port}')
        line = _one_line_error(_serve(config))
    assert line == f"error: tftp.port 127.0.0.1:{port}: address already in use"
    assert _port_is_free(http_port)


def test_permission_denied_on_a_low_port_without_the_capability(tmp_path: Path) -> None:
    # Root may bind below 1024 through CAP_NET_BIND_SERVICE: run as root without it.
    drop = ("setpriv", "--inh-caps=-net_bind_service", "--bounding-set=-net_bind_service", "--")
    config, http_port = _config(tmp_path, tftp='[tftp]\nlisten_address = "127.0.0.1"\nport = 69')
    line = _one_line_error(_serve(config, *drop))
    assert line == (
        "error: tftp.port 127.0.0.1:69: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    )
    assert _port_is_free(http_port)


def test_trustd_port_in_use(tmp_path: Path) -> None:
    """trustd starts only for a cluster with secrets; gRPC's own bind error is C noise."""
    config, http_port = _config(tmp_path)
    inventory = tmp_path / "cluster.yaml"
    inventory.write_text(
        "kind: Cluster\nname: pv\ntalosVersion: v1.13.0\nkubernetesVersion: 1.33.0\n"
        "endpoint: https://127.0.0.1:6443\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONER_")}
    for args in (("inventory", "apply", str(inventory)), ("cluster", "secrets", "pv")):
        done = subprocess.run(
            [str(PROVISIONER), "--config", str(config), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=SERVE_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = config.read_text().replace(
            "[trustd]\nenabled = false", f'[trustd]\nlisten = "127.0.0.1:{port}"'
        )
        config.write_text(text)
        line = _one_line_error(_serve(config))
    assert line == f"error: trustd.listen 127.0.0.1:{port}: address already in use"
    assert _port_is_free(http_port)


def test_address_not_on_this_host(tmp_path: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): on no interface here; nothing is sent.
    config, _ = _config(tmp_path, http='[http]\nlisten = "192.0.2.1:8080"')
    line = _one_line_error(_serve(config))
    assert line == "error: http.listen 192.0.2.1:8080: no interface on this host has this address"


def test_unknown_dhcp_interface(tmp_path: Path) -> None:
    name = f"pv-no{secrets.token_hex(3)}"  # never created
    dhcp = (
        f'[dhcp]\nmode = "full"\ninterfaces = ["{name}"]\nlisten_address = "127.0.0.1"\nport = {_free_udp()}'
    )
    config, http_port = _config(tmp_path, dhcp=dhcp)
    line = _one_line_error(_serve(config))
    assert line == f"error: dhcp.interfaces {name}: no such network interface"
    assert _port_is_free(http_port)


def test_state_dir_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    state = blocker / "state"
    config, _ = _config(tmp_path, top=f"state_dir = {str(state)!r}")
    line = _one_line_error(_serve(config))
    assert line.startswith(f"error: state_dir {state}: not usable: ")
    assert "not a directory" in line


def test_state_dir_is_a_regular_file(tmp_path: Path) -> None:
    state = tmp_path / "state-file"
    state.write_text("")
    config, _ = _config(tmp_path, top=f"state_dir = {str(state)!r}")
    line = _one_line_error(_serve(config))
    assert line.startswith(f"error: state_dir {state}: ")


def test_postgresql_not_listening(tmp_path: Path) -> None:
    port = _free_tcp()  # PostgreSQL's URL, nothing listening there
    url = f"postgresql+asyncpg://provisioner:S3cret-db-pw@127.0.0.1:{port}/provisioner"
    config, http_port = _config(
        tmp_path, top=f"state_dir = {str(tmp_path / 'state')!r}\ndatabase_url = {url!r}"
    )
    line = _one_line_error(_serve(config))
    assert line == (
        f"error: database_url postgresql+asyncpg://provisioner:***@127.0.0.1:{port}/provisioner: "
        "cannot connect: connection refused"
    )
    assert _port_is_free(http_port)


def test_invalid_toml_value(tmp_path: Path) -> None:
    config, _ = _config(tmp_path, tftp="[tftp]\nport = 70000")
    line = _one_line_error(_serve(config))
    assert line == f"error: {config}: tftp.port 70000: Input should be less than or equal to 65535"


def test_invalid_toml_syntax_names_the_line(tmp_path: Path) -> None:
    config, _ = _config(tmp_path, tftp="[tftp\nport = 69")
    line = _one_line_error(_serve(config))
    assert line.startswith(f"error: {config}: not valid TOML: ")
    assert "line " in line


def test_start_logs_are_printed_once_ready(tmp_path: Path) -> None:
    """The control: held log lines are not lost when the start succeeds."""
    config, http_port = _config(tmp_path)
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [str(PROVISIONER), "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while "provisioner ready" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert '"msg": "starting web"' in text
        assert f"http listening on 127.0.0.1:{http_port}" in text
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


async def test_nothing_half_started_is_left_running(tmp_path: Path) -> None:
    """In-process: when DHCP fails, HTTP and TFTP were up; both sockets and all threads go."""
    name = f"pv-no{secrets.token_hex(3)}"
    dhcp = (
        f'[dhcp]\nmode = "full"\ninterfaces = ["{name}"]\nlisten_address = "127.0.0.1"\nport = {_free_udp()}'
    )
    tftp_port = _free_udp()
    config, http_port = _config(
        tmp_path, dhcp=dhcp, tftp=f'[tftp]\nlisten_address = "127.0.0.1"\nport = {tftp_port}'
    )
    settings = load_settings(config, environ={})
    before = set(threading.enumerate())
    with pytest.raises(StartupError) as info:
        await run_daemon(settings)
    assert str(info.value) == f"dhcp.interfaces {name}: no such network interface"
    assert _port_is_free(http_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", tftp_port))  # TFTP's listener is closed too
    deadline = time.monotonic() + 10
    while (left := [t for t in threading.enumerate() if t not in before and t.is_alive()]) and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.05)
    assert left == []
