from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.matching import MachineIndex, labels_from_raw
from provisioner.model import MachineSummary, normalize_mac, normalize_uuid


@pytest.mark.parametrize(
    "spelling",
    [
        "52:54:00:77:00:10",
        "52-54-00-77-00-10",
        "5254.0077.0010",
        "525400770010",
        "52:54:00:77:00:10 ",
        "52:54:00:77:00:10".upper(),
    ],
)
def test_mac_spellings_normalise(spelling: str) -> None:
    assert normalize_mac(spelling) == "52:54:00:77:00:10"


@pytest.mark.parametrize(
    "bad", ["", "52:54:00:77:00", "52:54:00:77:00:10:11", "zz:54:00:77:00:10", "52:54:00:77:00:1g"]
)
def test_bad_macs_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="MAC"):
        normalize_mac(bad)


def test_uuid_normalisation_and_placeholders() -> None:
    assert (
        normalize_uuid("{00000000-0000-4000-8000-525400770010}".upper())
        == "00000000-0000-4000-8000-525400770010"
    )
    for placeholder in ("00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"):
        with pytest.raises(ValueError, match="placeholder"):
            normalize_uuid(placeholder)


@given(st.binary(min_size=6, max_size=6), st.sampled_from([":", "-", ""]), st.booleans())
def test_mac_round_trip(raw: bytes, sep: str, upper: bool) -> None:
    text = sep.join(f"{b:02x}" for b in raw)
    text = text.upper() if upper else text
    assert normalize_mac(text) == ":".join(f"{b:02x}" for b in raw)


A = MachineSummary(
    name="a", macs=("00:00:00:00:00:0a",), uuid="00000000-0000-4000-8000-00000000000a", serial="S1"
)
B = MachineSummary(name="b", macs=("00:00:00:00:00:0b", "00:00:00:00:01:0b"), uuid=None, serial="DUP")
C = MachineSummary(name="c", macs=("00:00:00:00:00:0c",), serial="DUP")


def index() -> MachineIndex:
    return MachineIndex([C, B, A])


def test_match_by_each_label() -> None:
    idx = index()
    assert idx.match(labels_from_raw(mac="00-00-00-00-01-0B")) is B
    assert idx.match(labels_from_raw(uuid="00000000-0000-4000-8000-00000000000A")) is A
    assert idx.match(labels_from_raw(serial="S1")) is A


def test_uuid_beats_mac() -> None:
    labels = labels_from_raw(mac="00:00:00:00:00:0b", uuid="00000000-0000-4000-8000-00000000000a")
    assert index().match(labels) is A


def test_shared_serial_identifies_nobody() -> None:
    assert index().match(labels_from_raw(serial="DUP")) is None


def test_garbage_labels_are_ignored_not_fatal() -> None:
    labels = labels_from_raw(mac="not-a-mac", uuid="nope", serial="  ")
    assert labels.mac is None and labels.uuid is None and labels.serial is None
    assert index().match(labels) is None
    # the all-zero UUID QEMU sends without -uuid must not match anything
    assert labels_from_raw(uuid="00000000-0000-0000-0000-000000000000").uuid is None


def test_matching_is_deterministic_and_pure() -> None:
    idx = index()
    labels = labels_from_raw(mac="00:00:00:00:00:0a")
    assert [idx.match(labels) for _ in range(3)] == [A, A, A]
    assert [m.name for m in idx.all()] == ["a", "b", "c"]
    assert len(idx) == 3
