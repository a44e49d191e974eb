from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from provisioner.settings import Settings, SettingsError, SubnetSettings, load_settings, resolve_config_path

CONTRACT_TOML = """
state_dir = "var"
database_url = "sqlite+aiosqlite:///var/provisioner.db"

[dhcp]
mode = "full"
interfaces = ["br0"]
port = 67
proxy_port = 4011
relay_agents = []

[[dhcp.subnet]]
cidr = "10.77.0.0/24"
pool = "10.77.0.100-10.77.0.199"
gateway = "10.77.0.1"
dns = ["10.77.0.1"]
lease_time = 3600

[tftp]
port = 69
block_size_max = 1468
window_size_max = 16

[http]
listen = "10.77.0.1:8080"
public_url = "http://10.77.0.1:8080"

[power]
timeout_s = 10
concurrency = 32

[trustd]
listen = "10.77.0.1:50001"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "provisioner.toml"
    path.write_text(text)
    return path


def test_contract_example_loads(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, CONTRACT_TOML), environ={})
    assert s.dhcp.subnet[0].cidr == ipaddress.IPv4Network("10.77.0.0/24")
    assert s.dhcp.subnet[0].pool_range == (
        ipaddress.IPv4Address("10.77.0.100"),
        ipaddress.IPv4Address("10.77.0.199"),
    )
    assert s.tftp.block_size_max == 1468
    assert s.http.host_port == ("10.77.0.1", 8080)
    assert s.trustd.host_port == ("10.77.0.1", 50001)
    assert s.db_url == "sqlite+aiosqlite:///var/provisioner.db"


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(Exception, match="frozen"):
        s.tftp.port = 1  # type: ignore[misc]


def test_defaults_derive_database_from_state_dir() -> None:
    s = load_settings(None, environ={"PROVISIONER_STATE_DIR": "/srv/pv"})
    assert s.state_dir == Path("/srv/pv")
    assert s.db_url == "sqlite+aiosqlite:////srv/pv/provisioner.db"


def test_environment_overrides_file(tmp_path: Path) -> None:
    env = {
        "PROVISIONER_TFTP_PORT": "6969",
        "PROVISIONER_DHCP_INTERFACES": '["lo", "eth1"]',
        "PROVISIONER_HTTP_LISTEN": "127.0.0.1:9999",
        "PROVISIONER_DATABASE_URL": "postgresql+asyncpg://u@h/db",
        "PROVISIONER_TEST_SOMETHING": "ignored",
    }
    s = load_settings(write(tmp_path, CONTRACT_TOML), environ=env)
    assert s.tftp.port == 6969
    assert s.dhcp.interfaces == ("lo", "eth1")
    assert s.http.listen == "127.0.0.1:9999"
    assert s.db_url == "postgresql+asyncpg://u@h/db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # `key value: problem`, the shape of every start-up error (issue 11 item 4)
        ("[tftp]\nportt = 1\n", "tftp.portt 1: unknown key"),
        ("[tftp]\nport = 70000\n", "tftp.port 70000: Input should be less than or equal to 65535"),
        ("[dhcp]\nmode = 'both'\n", "dhcp.mode 'both':"),
        ("[http]\nlisten = 'nohost'\n", "http.listen 'nohost': expected HOST:PORT"),
        ("bogus = 1\n", "bogus 1: unknown key"),
        ("[[dhcp.subnet]]\ncidr = '10.0.0.0/24'\npool = '10.0.1.1-10.0.1.9'\n", "is not inside 10.0.0.0/24"),
        ("[tftp\n", "not valid TOML"),
    ],
)
def test_bad_key_or_value_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_several_bad_entries_are_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[tftp]\nport = 70000\n[dhcp]\nmode = 'both'\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    text = str(info.value)
    assert "\n" not in text
    assert "tftp.port 70000:" in text
    assert "dhcp.mode 'both':" in text


def test_unreadable_settings_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read the settings file"):
        load_settings(tmp_path, environ={})  # a directory: root cannot read it as a file either


def test_bad_environment_value_names_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, environ={"PROVISIONER_TFTP_PORT": "notaport"})
    assert "PROVISIONER_TFTP_PORT" in str(info.value)
    assert "tftp.port" in str(info.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_config_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(None, {}) is None
    (tmp_path / "provisioner.toml").write_text("")
    assert resolve_config_path(None, {}) == Path("provisioner.toml")
    assert resolve_config_path(None, {"PROVISIONER_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert resolve_config_path("/y.toml", {"PROVISIONER_CONFIG": "/x.toml"}) == Path("/y.toml")


def test_example_file_and_docs_cover_every_key() -> None:
    """docs/settings.md and provisioner.example.toml name every settings key, and the example loads."""
    root = Path(__file__).resolve().parents[2]
    example = root / "provisioner.example.toml"
    docs = (root / "docs" / "settings.md").read_text()
    load_settings(example, environ={})
    text = example.read_text()
    sections = {"": Settings}
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            sections[name] = annotation
    for section, model in sections.items():
        for key in model.model_fields:
            if not section and key in sections:
                continue
            dotted = f"{section}.{key}" if section else key
            assert f"`{dotted}`" in docs, f"docs/settings.md does not document {dotted}"
            if dotted != "dhcp.subnet":
                assert f"{key} =" in text, f"provisioner.example.toml lacks {dotted}"
    for key in SubnetSettings.model_fields:
        assert f"`dhcp.subnet.{key}`" in docs
        assert f"{key} =" in text
