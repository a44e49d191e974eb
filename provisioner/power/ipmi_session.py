"""pyghmi's RMCP+ client session, adjusted by subclassing (site-packages stays untouched).

Why a subclass (pyghmi 1.6.19, `pyghmi/ipmi/private/session.py`):

1. **SHA-1 answer to a SHA-256 proposal.** The client always proposes cipher suite 17
   first and takes for granted that the BMC accepted it: it never reads the algorithms in
   the Open Session Response. BMCs that answer with suite 3 instead (pyghmi's own
   `ipmi.bmc.Bmc`, hence virtualbmc and the lab BMC) then send a 20-byte SHA-1 HMAC in
   RAKP2 where the client expects 32 bytes, and `_got_rakp2` dies with `struct.error`.
   `_got_rmcp_response` below reads what the BMC selected (`ipmi_codec.check_open_session`)
   and switches the session's hash to it before RAKP1. BMCs that *reject* suite 17 with a
   non-zero RMCP+ status (OpenIPMI's `ipmi_sim`; the lab BMC can answer 0x11) already work:
   pyghmi re-proposes suite 3.
2. **Downgrades.** The same hook refuses suite 0 (RAKP-none) and anything without
   integrity or AES; `_got_channel_auth_cap` refuses BMCs that offer only IPMI 1.5, where
   pyghmi would silently fall back to MD5 session auth.
3. **A fresh session per call.** `Session.__new__` hands back cached sessions keyed by
   credentials, and its `initting_sessions` entries are never removed (they are added with
   str keys and deleted with bytes keys), so after a logout the next session to the same
   BMC is a dead object (`TypeError` in `raw_command`). `__new__` here always builds a new
   session, and `__init__` drops the stale cache entry, which also holds the password.
4. **Malformed RAKP2** (`struct.error`/`IndexError`) ends the login with an error instead
   of raising inside pyghmi's shared I/O loop (docs/threats.md E8).

Refusals are reported through pyghmi's own error path with `REFUSED_PREFIX`, which
`ipmi.login_error` turns into `BmcInsecure`.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from pyghmi.ipmi.private import session as pyghmi_session

from provisioner.power.ipmi_codec import (
    AcceptedSuite,
    PolicyRefusalError,
    check_channel_auth,
    check_open_session,
)

__all__ = ["REFUSED_PREFIX", "PolicySession"]

REFUSED_PREFIX = "refused by policy: "
_IGNORED = -9  # what pyghmi's handlers return for a packet they drop
_MIN_RMCP_HEADER = 8  # tag, status, max privilege, reserved, console session id


class PolicySession(pyghmi_session.Session):  # type: ignore[misc]
    """A pyghmi client session that enforces our cipher policy. One per BMC call."""

    negotiated_suite: int | None = None
    errormsg: str | None = None  # pyghmi reads it after a failed login; see _mark_broken

    def __new__(cls, bmc: str, *_args: object, port: int = 623, **_kwargs: object) -> Any:  # noqa: ANN401
        """Always a new session; forbid the sockets of live sessions to the same BMC."""
        self = object.__new__(cls)
        # pyghmi routes answers by (BMC address, local port): a second live session to
        # the same BMC must not share a socket. Our per-BMC lock makes this rare.
        self.forbidsock = [
            handler.socket
            for handlers in list(cls.bmc_handlers.values())
            for handler in list(handlers.values())
            if handler.bmc == bmc and handler.port == port and not handler.broken
        ]
        return self

    def __init__(self, bmc: str, userid: str, password: str, port: int = 623) -> None:
        """Log in synchronously (pyghmi blocks until done); raise `IpmiException` on failure."""
        try:
            super().__init__(bmc=bmc, userid=userid, password=password, port=port)
        finally:
            # The key uses the str arguments; pyghmi deletes with bytes and never matches.
            self.initting_sessions.pop((bmc, userid, password, port, None), None)

    def _mark_broken(self, error: str | None = None) -> None:
        # pyghmi's _mark_broken sets `broken` (in logout) before `errormsg`, and packets
        # may be handled by another thread's wait_for_rsp(): the logging-in thread could
        # see a broken session without its error. Record the error first.
        if error is not None:
            self.errormsg = error
        super()._mark_broken(error)

    def _refuse(self, reason: str) -> int:
        self.sessioncontext = "FAILED"
        self.onlogon({"error": REFUSED_PREFIX + reason})
        return _IGNORED

    def _use_suite(self, suite: AcceptedSuite) -> None:
        # The attributes pyghmi's RAKP, integrity and keepalive code read.
        self.attemptedhash = 256 if suite.sha256 else 1
        self.currhashlib = hashlib.sha256 if suite.sha256 else hashlib.sha1
        self.currhashlen = suite.integrity_len
        self.negotiated_suite = suite.number

    def _got_channel_auth_cap(self, response: dict[str, Any]) -> Any:  # noqa: ANN401
        if "error" not in response and response.get("code") == 0:
            try:
                check_channel_auth(bytes(response.get("data", b"")))
            except PolicyRefusalError as refusal:
                return self._refuse(str(refusal))
        return super()._got_channel_auth_cap(response)

    def _got_rmcp_response(self, data: bytearray) -> Any:  # noqa: ANN401
        # Only judge the answer pyghmi would act on: our open request, our tag, success.
        if (
            self.sessioncontext == "OPENSESSION"
            and len(data) >= 2
            and data[0] == self.rmcptag
            and data[1] == 0
        ):
            if len(data) >= _MIN_RMCP_HEADER:
                (console_sid,) = struct.unpack("<I", bytes(data[4:8]))
                if console_sid != self.localsid:
                    return _IGNORED  # stale or forged; pyghmi drops it too
            try:
                suite = check_open_session(bytes(data))
            except PolicyRefusalError as refusal:
                return self._refuse(str(refusal))
            self._use_suite(suite)
        return super()._got_rmcp_response(data)

    def _got_rakp2(self, data: bytearray) -> Any:  # noqa: ANN401
        try:
            return super()._got_rakp2(data)
        except (struct.error, IndexError):
            self.sessioncontext = "FAILED"
            self.onlogon({"error": "malformed RAKP2 message from BMC"})
            return _IGNORED
