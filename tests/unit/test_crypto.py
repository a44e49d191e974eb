from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from provisioner.store.crypto import KEY_ENV, SecretBox, SecretError, load_or_create_key


def test_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path, environ={})
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) == 32
    assert load_or_create_key(tmp_path, environ={}) == key


def test_key_from_environment_wins(tmp_path: Path) -> None:
    raw = bytes(range(32))
    assert load_or_create_key(tmp_path, environ={KEY_ENV: base64.b64encode(raw).decode()}) == raw
    assert not (tmp_path / "secret.key").exists()
    with pytest.raises(SecretError, match=KEY_ENV):
        load_or_create_key(tmp_path, environ={KEY_ENV: "c2hvcnQ="})


def test_corrupt_key_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("garbage!!")
    with pytest.raises(SecretError, match="not a valid key"):
        load_or_create_key(tmp_path, environ={})


def test_seal_open_and_context_binding() -> None:
    box = SecretBox(bytes(32))
    blob = box.seal("hunter2", "bmc:a")
    assert b"hunter2" not in blob
    assert box.open_text(blob, "bmc:a") == "hunter2"
    with pytest.raises(SecretError, match="bmc:b"):
        box.open(blob, "bmc:b")
    with pytest.raises(SecretError):
        SecretBox(bytes([1]) * 32).open(blob, "bmc:a")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SecretError):
        box.open(tampered, "bmc:a")
    assert "key" in repr(box) and "hunter2" not in repr(box)
