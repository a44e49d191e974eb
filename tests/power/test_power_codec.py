"""Pure parts: the IPMI chassis codec, the session policy, error mapping, secrets."""

from __future__ import annotations

import pickle

import pytest

from provisioner.power import (
    BmcAuthFailed,
    BmcCredentials,
    BmcInsecure,
    BmcProtocolError,
    BmcUnreachable,
    BmcUnsupported,
    Secret,
)
from provisioner.power.ipmi import login_error
from provisioner.power.ipmi_codec import (
    SUITE_3,
    SUITE_17,
    BootFlags,
    CompletionKind,
    PolicyRefusalError,
    boot_flags_request,
    boot_valid_bit_request,
    check_channel_auth,
    check_open_session,
    classify_completion,
    parse_boot_flags,
    parse_chassis_status,
)
from provisioner.power.ipmi_session import REFUSED_PREFIX


@pytest.mark.parametrize(
    ("pxe", "persistent", "efi", "expected"),
    [
        (True, False, True, (5, 0xA0, 0x04, 0, 0, 0)),
        (True, True, True, (5, 0xE0, 0x04, 0, 0, 0)),
        (False, False, False, (5, 0x80, 0x08, 0, 0, 0)),
        (False, True, False, (5, 0xC0, 0x08, 0, 0, 0)),
    ],
)
def test_boot_flags_request(pxe: bool, persistent: bool, efi: bool, expected: tuple[int, ...]) -> None:
    request = boot_flags_request(pxe=pxe, persistent=persistent, efi=efi)
    assert request == expected
    # what Get System Boot Options would return: version, parameter, the five bytes
    parsed = parse_boot_flags(bytes([1, 5, *request[1:]]))
    assert parsed == BootFlags(valid=True, persistent=persistent, efi=efi, device=1 if pxe else 2)


def test_boot_valid_bit_and_bad_parameter() -> None:
    assert boot_valid_bit_request() == (3, 0x08)
    with pytest.raises(ValueError, match="boot-flags"):
        parse_boot_flags(bytes([1, 4, 0, 0]))


def test_chassis_status() -> None:
    assert parse_chassis_status(b"\x01\x00\x00") is True
    assert parse_chassis_status(b"\x60\x00\x00") is False  # policy bits, power off
    with pytest.raises(ValueError, match="empty"):
        parse_chassis_status(b"")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (0xC0, CompletionKind.TRANSIENT),
        (0xC1, CompletionKind.UNSUPPORTED),
        (0xCC, CompletionKind.UNSUPPORTED),
        (0xD4, CompletionKind.PRIVILEGE),
        (0x42, CompletionKind.ERROR),
    ],
)
def test_completion_codes(code: int, kind: CompletionKind) -> None:
    assert classify_completion(code)[0] is kind


def open_session_response(auth: int, integrity: int, conf: int) -> bytes:
    head = bytes([7, 0, 4, 0]) + (1).to_bytes(4, "little") + (2).to_bytes(4, "little")
    return head + bytes(
        [0, 0, 0, 8, auth, 0, 0, 0, 1, 0, 0, 8, integrity, 0, 0, 0, 2, 0, 0, 8, conf, 0, 0, 0]
    )


def test_open_session_policy() -> None:
    assert check_open_session(open_session_response(3, 4, 1)) == SUITE_17
    assert check_open_session(open_session_response(1, 1, 1)) == SUITE_3
    for refused in [(0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 2, 1), (3, 1, 1)]:
        with pytest.raises(PolicyRefusalError, match="only cipher suites 17 and 3"):
            check_open_session(open_session_response(*refused))
    with pytest.raises(PolicyRefusalError, match="truncated"):
        check_open_session(open_session_response(3, 4, 1)[:20])


def test_channel_auth_policy() -> None:
    check_channel_auth(bytes([1, 0x80 | 0x04, 0x04, 0x02, 0, 0, 0, 0]))
    with pytest.raises(PolicyRefusalError, match=r"IPMI 1\.5"):
        check_channel_auth(bytes([1, 0x04, 0x04, 0x00, 0, 0, 0, 0]))
    with pytest.raises(PolicyRefusalError):
        check_channel_auth(bytes([1, 0x80]))


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (None, BmcUnreachable),
        ("timeout", BmcUnreachable),
        ("Unable to transmit to specified address", BmcUnreachable),
        ("Incorrect password provided", BmcAuthFailed),
        ("Unauthorized name in RAKP2", BmcAuthFailed),
        ("Invalid RAKP4 integrity code (wrong Kg?)", BmcAuthFailed),
        ("Unauthorized role or privilege level requested in RAKP2", BmcAuthFailed),
        (REFUSED_PREFIX + "BMC offers only IPMI 1.5 sessions", BmcInsecure),
        ("No Cipher suite match with proposed security algorithms", BmcUnsupported),
        ("Insufficient resources to create new session", BmcProtocolError),
        ("something new", BmcProtocolError),
    ],
)
def test_login_errors(message: str | None, error: type[Exception]) -> None:
    err = login_error("ipmi 10.0.0.9:623", message)
    assert type(err) is error
    assert str(err).startswith("ipmi 10.0.0.9:623: ")
    assert err.hint  # every error tells the operator what to check


def test_transient_only_where_retry_helps() -> None:
    assert login_error("x", "Insufficient resources to create new session").transient
    assert not login_error("x", "Incorrect password provided").transient
    assert not login_error("x", None).transient


def test_secret_never_shows() -> None:
    reveals: list[int] = []

    def decrypt() -> str:
        reveals.append(1)
        return "S3ntinel-lazy"

    lazy = Secret.lazy(decrypt)
    plain = Secret("S3ntinel-plain")
    creds = BmcCredentials("ipmi", "10.0.0.9", 623, "admin", plain)
    for text in (repr(plain), str(plain), f"{plain}", repr(creds), str(creds), repr(lazy)):
        assert "S3ntinel" not in text
        assert "***" in text
    assert reveals == []  # nothing decrypted by showing it
    assert lazy.reveal() == "S3ntinel-lazy"
    assert reveals == [1]
    assert plain.reveal() == "S3ntinel-plain"
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(creds)
    assert creds.label == "ipmi 10.0.0.9:623"
    assert BmcCredentials("manual").label == "manual"
