"""The per-boot config code of a `configCode` cluster (docs/threats.md H1).

A MAC, a UUID and a source address can all be spoofed; a code the daemon shows only to the
operator cannot be derived from the machine. With the cluster field `configCode: true` the
install script's `talos.config` URL carries `code=${code}`: Talos waits until META key
DownloadURLCode exists (its dashboard's config-URL screen writes it, siderolabs/talos
internal/pkg/dashboard/configurl.go) and substitutes it before fetching. The operator reads
the code from the `config.code` event and types it on the machine's console (or its BMC's
KVM / serial-over-LAN). Only the code's sha256 is stored, next to the token's.

The alphabet has no 0/O, 1/I/L, no characters that need URL escaping, and none that Go's
`regexp.ReplaceAllString` would read as a template (`$`): Talos substitutes the value with it.
"""

from __future__ import annotations

import hmac
import secrets

from provisioner.store.tokens import hash_token

__all__ = ["CODE_ALPHABET", "CODE_LENGTH", "code_matches", "new_code"]

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8  # 31**8 ~ 2**39.6; guesses are bounded by the config rate limiter
MAX_PRESENTED = 64


def new_code() -> str:
    """A fresh random code, short enough to type on a console."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def code_matches(presented: str, code_hash: str) -> bool:
    """True if `presented` is the code whose hash is stored; constant time in the hash.

    Case and surrounding blanks are forgiven: the code is typed by hand.
    """
    value = presented.strip().upper()[:MAX_PRESENTED]
    return hmac.compare_digest(hash_token(value), code_hash)
