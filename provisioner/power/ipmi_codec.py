"""IPMI 2.0 chassis commands and session-policy decisions, without I/O.

Theory of operation
-------------------
The IPMI driver sends four chassis requests over a pyghmi RMCP+ session and decides two
security questions during the session handshake. Both halves are pure functions here so
they can be tested without a BMC:

* Requests are `(netfn, command, data)` triples; responses are parsed from the data bytes
  after the completion code. References are to the IPMI v2.0 rev 1.1 specification.
* Completion codes map to our error kinds (`classify_completion`): "invalid command" and
  "invalid data" become *unsupported*, "busy"/"timeout" are *transient*.
* Session policy (`check_channel_auth`, `check_open_session`): we accept only IPMI 2.0
  RMCP+ with cipher suite 17 (HMAC-SHA256 / HMAC-SHA256-128 / AES-CBC-128) or suite 3
  (HMAC-SHA1 / HMAC-SHA1-96 / AES-CBC-128). Cipher suite 0 (RAKP-none: authentication
  bypass, US-CERT TA13-207A), any suite without integrity or privacy, and IPMI 1.5
  sessions are refused (docs/threats.md E1, E3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CHASSIS_NETFN",
    "AcceptedSuite",
    "BootFlags",
    "ChassisControl",
    "CompletionKind",
    "boot_flags_request",
    "boot_valid_bit_request",
    "check_channel_auth",
    "check_open_session",
    "classify_completion",
    "parse_boot_flags",
    "parse_chassis_status",
]

# IPMI v2.0 §28: chassis commands live in network function 0x00.
CHASSIS_NETFN = 0x00
CMD_GET_CHASSIS_STATUS = 0x01  # §28.2
CMD_CHASSIS_CONTROL = 0x02  # §28.3
CMD_SET_BOOT_OPTIONS = 0x08  # §28.12
CMD_GET_BOOT_OPTIONS = 0x09  # §28.13

# Table 28-14 boot option parameters.
BOOT_PARAM_VALID_BIT_CLEARING = 3
BOOT_PARAM_FLAGS = 5
# Param 3 bit 3: don't clear the boot-flags valid bit when no Chassis Control command
# arrives within 60 s, so "set PXE, then power on a few seconds later" keeps working.
KEEP_VALID_BIT_ON_60S_TIMEOUT = 0x08

# Param 5 data byte 1 (Table 28-14).
FLAG_VALID = 0x80
FLAG_PERSISTENT = 0x40
FLAG_EFI = 0x20
# Param 5 data byte 2 bits 5:2, boot device selector.
DEVICE_PXE = 0x1
DEVICE_DISK = 0x2  # "force boot from default hard-drive"


class ChassisControl(enum.IntEnum):
    """Chassis Control request byte 1 (IPMI v2.0 §28.3, Table 28-4)."""

    POWER_DOWN = 0
    POWER_UP = 1
    POWER_CYCLE = 2
    HARD_RESET = 3
    SOFT_SHUTDOWN = 5  # "initiate a soft-shutdown of OS via ACPI by emulating a fatal overtemp"


def parse_chassis_status(data: bytes) -> bool:
    """Get Chassis Status response → whether power is on (§28.2 byte 1 bit 0)."""
    if not data:
        msg = "empty Get Chassis Status response"
        raise ValueError(msg)
    return bool(data[0] & 0x01)


@dataclass(frozen=True, slots=True)
class BootFlags:
    """Boot flags parameter (param 5) in a readable form."""

    valid: bool
    persistent: bool
    efi: bool
    device: int  # selector bits 5:2: 1 PXE, 2 disk, 0 no override


def boot_valid_bit_request() -> tuple[int, ...]:
    """Set System Boot Options data for param 3 (done before param 5, as ipmitool does)."""
    return (BOOT_PARAM_VALID_BIT_CLEARING, KEEP_VALID_BIT_ON_60S_TIMEOUT)


def boot_flags_request(*, pxe: bool, persistent: bool, efi: bool) -> tuple[int, ...]:
    """Set System Boot Options data for param 5 (boot flags), §28.12 / Table 28-14."""
    byte1 = FLAG_VALID | (FLAG_PERSISTENT if persistent else 0) | (FLAG_EFI if efi else 0)
    device = DEVICE_PXE if pxe else DEVICE_DISK
    return (BOOT_PARAM_FLAGS, byte1, device << 2, 0, 0, 0)


def parse_boot_flags(data: bytes) -> BootFlags:
    """Get System Boot Options (param 5) response data → `BootFlags` (§28.13)."""
    # data[0] parameter version, data[1] parameter number (bit 7: invalid/locked),
    # then the 5 bytes of boot flags.
    if len(data) < 4 or (data[1] & 0x7F) != BOOT_PARAM_FLAGS:
        msg = "not a boot-flags parameter response"
        raise ValueError(msg)
    byte1, byte2 = data[2], data[3]
    return BootFlags(
        valid=bool(byte1 & FLAG_VALID),
        persistent=bool(byte1 & FLAG_PERSISTENT),
        efi=bool(byte1 & FLAG_EFI),
        device=(byte2 >> 2) & 0x0F,
    )


class CompletionKind(enum.StrEnum):
    """What a non-zero completion code means to us."""

    UNSUPPORTED = "unsupported"
    PRIVILEGE = "privilege"
    TRANSIENT = "transient"
    ERROR = "error"


# IPMI v2.0 §5.2 Table 5-2 generic completion codes.
_COMPLETION = {
    0xC0: (CompletionKind.TRANSIENT, "node busy"),
    0xC1: (CompletionKind.UNSUPPORTED, "invalid command"),
    0xC2: (CompletionKind.UNSUPPORTED, "command invalid for given LUN"),
    0xC3: (CompletionKind.TRANSIENT, "timeout while processing command"),
    0xC9: (CompletionKind.UNSUPPORTED, "parameter out of range"),
    0xCC: (CompletionKind.UNSUPPORTED, "invalid data field in request"),
    0xCE: (CompletionKind.TRANSIENT, "command response could not be provided"),
    0xD4: (CompletionKind.PRIVILEGE, "insufficient privilege level"),
    0xD5: (CompletionKind.UNSUPPORTED, "command not supported in present state"),
    0x80: (CompletionKind.UNSUPPORTED, "parameter not supported"),  # §28.12 code 80h
}


def classify_completion(code: int) -> tuple[CompletionKind, str]:
    """Map a non-zero completion code to a kind and the spec's wording."""
    return _COMPLETION.get(code, (CompletionKind.ERROR, f"completion code 0x{code:02x}"))


# ---- session policy ----------------------------------------------------------------

# §13.28 Tables 13-17/18/19: algorithm numbers in the Open Session Response payloads.
AUTH_NONE, AUTH_HMAC_SHA1, AUTH_HMAC_SHA256 = 0, 1, 3
INTEGRITY_NONE, INTEGRITY_HMAC_SHA1_96, INTEGRITY_HMAC_SHA256_128 = 0, 1, 4
CONF_NONE, CONF_AES_CBC_128 = 0, 1


@dataclass(frozen=True, slots=True)
class AcceptedSuite:
    """A cipher suite we are willing to run; `sha256` picks the hash for RAKP and HMACs."""

    number: int
    sha256: bool
    integrity_len: int  # bytes of HMAC kept in each packet's AuthCode


SUITE_17 = AcceptedSuite(number=17, sha256=True, integrity_len=16)
SUITE_3 = AcceptedSuite(number=3, sha256=False, integrity_len=12)
_ACCEPTED = {
    (AUTH_HMAC_SHA256, INTEGRITY_HMAC_SHA256_128, CONF_AES_CBC_128): SUITE_17,
    (AUTH_HMAC_SHA1, INTEGRITY_HMAC_SHA1_96, CONF_AES_CBC_128): SUITE_3,
}
# Open Session Response (§13.18, Table 13-10): tag, status, max privilege, reserved,
# 4-byte console session id, 4-byte BMC session id, then three 8-byte algorithm payloads
# whose algorithm number is at offset 4 of each.
_OPEN_SESSION_RESPONSE_LEN = 36
_AUTH_ALG_AT, _INTEGRITY_ALG_AT, _CONF_ALG_AT = 16, 24, 32


class PolicyRefusalError(ValueError):
    """The BMC offered a session we refuse to use."""


def check_open_session(data: bytes) -> AcceptedSuite:
    """Which accepted suite a successful Open Session Response selected, or refuse it.

    A BMC may answer a suite-17 proposal with suite 3 (pyghmi's own BMC does, see
    `ipmi_session`); that is accepted. Anything else, notably RAKP-none (suite 0) or a
    session without integrity or confidentiality, raises `PolicyRefusalError`.
    """
    if len(data) < _OPEN_SESSION_RESPONSE_LEN:
        msg = f"truncated RMCP+ Open Session Response ({len(data)} bytes)"
        raise PolicyRefusalError(msg)
    algorithms = (
        data[_AUTH_ALG_AT] & 0x3F,
        data[_INTEGRITY_ALG_AT] & 0x3F,
        data[_CONF_ALG_AT] & 0x3F,
    )
    suite = _ACCEPTED.get(algorithms)
    if suite is None:
        auth, integrity, conf = algorithms
        msg = (
            f"BMC selected authentication={auth} integrity={integrity} "
            f"confidentiality={conf}; only cipher suites 17 and 3 are allowed"
        )
        raise PolicyRefusalError(msg)
    return suite


def check_channel_auth(data: bytes) -> None:
    """Refuse a Get Channel Authentication Capabilities answer without IPMI 2.0 (§22.13).

    Byte 2 bit 7 says extended (IPMI 2.0) data is present; byte 4 bit 1 says the channel
    takes IPMI 2.0 (RMCP+) sessions. Without both, a client would fall back to IPMI 1.5
    (MD5/"straight password" session auth, no encryption) and we refuse.
    """
    if len(data) < 4 or not (data[1] & 0x80 and data[3] & 0x02):
        msg = "BMC offers only IPMI 1.5 sessions; IPMI 2.0 (RMCP+) is required"
        raise PolicyRefusalError(msg)
