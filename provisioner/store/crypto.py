"""Secrets at rest: AES-256-GCM with a key kept outside the database.

The key comes from `PROVISIONER_SECRET_KEY` (base64 of 32 bytes) or from
`state_dir/secret.key` (mode 0600, created on first use). A database dump alone reveals
no BMC password and no cluster secret.

Each ciphertext is bound to what it protects through the GCM associated data (for
example `bmc:lab-cp1`), so a ciphertext copied onto another row fails to decrypt instead
of handing one machine's password to another machine's BMC call.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_ENV", "KEY_FILE", "SecretBox", "SecretError", "load_or_create_key"]

KEY_ENV = "PROVISIONER_SECRET_KEY"
KEY_FILE = "secret.key"
_VERSION = b"\x01"
_NONCE_BYTES = 12


class SecretError(Exception):
    """The key is missing or wrong, or a ciphertext was tampered with."""


def load_or_create_key(state_dir: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The 32-byte key: from the environment, else the key file (created 0600 if absent)."""
    env = os.environ if environ is None else environ
    if raw := env.get(KEY_ENV):
        try:
            key = base64.b64decode(raw, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != 32:
            msg = f"{KEY_ENV} must be base64 of 32 bytes"
            raise SecretError(msg)
        return key
    path = state_dir / KEY_FILE
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except FileNotFoundError:
        state_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        # O_EXCL: two processes starting at once must not each write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(state_dir, env)
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64encode(key) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return key
    except binascii.Error:
        key = b""
    if len(key) != 32:
        msg = f"{path}: not a valid key (base64 of 32 bytes)"
        raise SecretError(msg)
    return key


class SecretBox:
    """Encrypt and decrypt small secrets bound to a context label."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "SecretBox(<key hidden>)"

    def seal(self, plaintext: str | bytes, context: str) -> bytes:
        """Ciphertext of `plaintext`, bound to `context`."""
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, data, context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        """The plaintext of `blob`; SecretError if the key or context is wrong."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            msg = f"ciphertext for {context} is malformed"
            raise SecretError(msg)
        nonce = blob[1 : 1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE_BYTES :], context.encode())
        except InvalidTag:
            msg = f"cannot decrypt the secret for {context}: wrong key or tampered data"
            raise SecretError(msg) from None

    def open_text(self, blob: bytes, context: str) -> str:
        """`open` decoded as UTF-8."""
        return self.open(blob, context).decode()
