"""The sans-I/O transfer machine against an in-memory receiver, over lossy wires."""

from __future__ import annotations

import itertools
import random
import zlib

import pytest

from provisioner.tftp.codec import (
    Data,
    ErrorPacket,
    LocalProtocolError,
    RemoteProtocolError,
    build_ack,
    build_error,
    parse_packet,
)
from provisioner.tftp.transfer import State, TransferComplete, TransferFailed, _Trigger

from .tftp_pair import MemoryClient, Wire, make_transfer, roundtrip_until_done

BLKSIZES = [None, "8", "512", "1468", "65464"]
WINDOWS = [None, "1", "4", "16"]
TSIZE = [False, True]
TIMEOUT = [None, "3"]
FAULTS = {
    "clean": {},
    "drop": {"drop": 0.1},
    "duplicate": {"duplicate": 0.2},
    "reorder": {"reorder": 0.3},
    "all": {"drop": 0.05, "duplicate": 0.1, "reorder": 0.1},
}


def _content(blocks: float, block_size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(int(blocks * block_size))


def _options(blksize: str | None, window: str | None, tsize: bool, timeout: str | None):
    opts: list[tuple[str, str]] = []
    if blksize:
        opts.append(("blksize", blksize))
    if window:
        opts.append(("windowsize", window))
    if tsize:
        opts.append(("tsize", "0"))
    if timeout:
        opts.append(("timeout", timeout))
    return tuple(opts)


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize(
    ("blksize", "window", "tsize", "timeout"),
    list(itertools.product(BLKSIZES, WINDOWS, TSIZE, TIMEOUT)),
)
def test_every_option_combination_survives_faults(blksize, window, tsize, timeout, fault):
    block = int(blksize or 512)
    seed = zlib.crc32(repr((blksize, window, tsize, timeout, fault)).encode())
    # A few blocks plus an exact multiple, so both the short and the empty last block occur.
    for blocks in (0, 0.5, 1, 5.25, 7):
        content = _content(blocks, block, seed)
        rng = random.Random(seed)
        # The first-block cap (Rule 5a, tests/security) ends a transfer whose OACK/DATA 1
        # is lost three times so that the client sends its RRQ again; that restart is
        # not modelled by this pair, so the cap is lifted to test the rest under faults.
        server = make_transfer(
            content, _options(blksize, window, tsize, timeout), retries=50, first_block_retries=50
        )
        client = MemoryClient()
        result = roundtrip_until_done(server, client, Wire(rng, **FAULTS[fault]), Wire(rng, **FAULTS[fault]))
        assert server.state is State.DONE, (blocks, result.events)
        assert server.ended
        assert bytes(client.received) == content
        assert result.events == [
            TransferComplete(len(content), len(content) // block + 1, server.retransmits)
        ]
        offered = client.oack or {}
        if tsize:
            assert offered["tsize"] == str(len(content))
        if timeout:
            assert offered["timeout"] == timeout
        if window:
            assert offered["windowsize"] == window
        if blksize:
            assert offered["blksize"] == blksize
        if not (blksize or window or tsize or timeout):
            assert client.oack is None  # RFC 2347 §4: no options, no OACK


def test_clean_lockstep_sends_each_block_once():
    content = _content(10, 512, 1)
    server = make_transfer(content)
    rng = random.Random(0)
    result = roundtrip_until_done(server, MemoryClient(), Wire(rng), Wire(rng))
    assert result.to_client.carried == 11
    assert server.retransmits == 0
    assert result.now == 0.0  # never waited for a timer


def test_window_sends_window_before_waiting():
    server = make_transfer(_content(20, 512, 2), (("windowsize", "8"),))
    assert len(server.datagrams_to_send()) == 1  # OACK
    server.receive_datagram(build_ack(0), 0.0)
    burst = [parse_packet(d) for d in server.datagrams_to_send()]
    assert [p.block for p in burst if isinstance(p, Data)] == list(range(1, 9))
    # A partial ACK (the client saw a gap after 5) restarts the window at 6 (RFC 7440 §4).
    server.receive_datagram(build_ack(5), 0.1)
    burst = [parse_packet(d) for d in server.datagrams_to_send()]
    assert [p.block for p in burst if isinstance(p, Data)] == list(range(6, 14))


def test_rollover_past_65535_blocks():
    # 70,000 blocks of 8 bytes: the block number wraps to 0 after 65535 (docs/threats.md B11).
    content = _content(70_000.5, 8, 3)
    server = make_transfer(content, (("blksize", "8"), ("windowsize", "16")))
    client = MemoryClient()
    rng = random.Random(3)
    roundtrip_until_done(server, client, Wire(rng, drop=0.001), Wire(rng, drop=0.001))
    assert server.state is State.DONE
    assert bytes(client.received) == content


def test_duplicate_acks_never_trigger_sends():
    # RFC 1123 §4.2.3.1: the Sorcerer's Apprentice bug (docs/threats.md B7).
    server = make_transfer(_content(5, 512, 4))
    server.datagrams_to_send()
    server.receive_datagram(build_ack(1), 0.0)
    assert len(server.datagrams_to_send()) == 1  # DATA 2
    for _ in range(100):
        server.receive_datagram(build_ack(1), 0.01)
        server.receive_datagram(build_ack(0), 0.01)
    assert server.datagrams_to_send() == []
    # Only the timer resends, and only the outstanding block.
    server.handle_timer(1.01)
    resent = [parse_packet(d) for d in server.datagrams_to_send()]
    assert resent == [Data(2, _content(5, 512, 4)[512:1024])]


def test_ack_outside_window_is_ignored():
    server = make_transfer(_content(20, 512, 5))
    server.datagrams_to_send()
    server.receive_datagram(build_ack(6), 0.0)  # block n+5, never sent (docs/threats.md B8)
    assert server.datagrams_to_send() == []
    server.receive_datagram(build_ack(1), 0.0)
    assert parse_packet(server.datagrams_to_send()[0]) == Data(2, _content(20, 512, 5)[512:1024])


def test_ack_other_than_zero_before_oack_acked_is_ignored():
    server = make_transfer(_content(3, 512, 6), (("tsize", "0"),))
    server.datagrams_to_send()
    server.receive_datagram(build_ack(1), 0.0)
    assert server.datagrams_to_send() == []
    assert server.state is State.WAIT_OACK_ACK


def test_backoff_and_bounded_retries_then_failed_event():
    server = make_transfer(_content(100, 512, 7), retries=3, timeout_s=1.0)
    server.datagrams_to_send()
    server.receive_datagram(build_ack(1), 0.0)  # the client is there: full backoff applies
    sent = len(server.datagrams_to_send())
    deadlines = []
    while (deadline := server.get_timer()) is not None:
        deadlines.append(deadline)
        server.handle_timer(deadline)
        sent += len(server.datagrams_to_send())
    # 1 + 3 retransmissions, intervals doubling: 1, 2, 4, 8 (docs/threats.md B9: bounded).
    assert sent == 4
    assert deadlines == [1.0, 3.0, 7.0, 15.0]
    assert server.state is State.FAILED
    assert server.ended
    event = server.next_event()
    assert isinstance(event, TransferFailed)
    assert event.outcome == "timeout"
    assert server.next_event() is None


def test_backoff_is_capped():
    server = make_transfer(b"x" * 1000, retries=10, timeout_s=1.0)
    server.receive_datagram(build_ack(1), 0.0)
    deadlines = []
    while (deadline := server.get_timer()) is not None:
        deadlines.append(deadline)
        server.handle_timer(deadline)
    gaps = [b - a for a, b in itertools.pairwise([0.0, *deadlines])]
    assert max(gaps) == 8.0


def test_client_timeout_is_base_and_server_cap_bounds_backoff():
    # Client timeout 5 s, server 0.1 s: once the client ACKed the OACK, intervals start
    # at 5 and never grow past max(5, 8 x 0.1), so a silent client releases its slot
    # after 5 x (1 + retries) s.
    server = make_transfer(b"x", (("timeout", "5"),), retries=3, timeout_s=0.1)
    server.receive_datagram(build_ack(0), 0.0)
    deadlines = []
    while (deadline := server.get_timer()) is not None:
        deadlines.append(deadline)
        server.handle_timer(deadline)
    assert deadlines == [5.0, 10.0, 15.0, 20.0]


def test_timer_before_deadline_does_nothing():
    server = make_transfer(b"abc")
    server.datagrams_to_send()
    server.handle_timer(0.5)
    assert server.datagrams_to_send() == []


def test_client_error_ends_transfer_silently():
    server = make_transfer(_content(3, 512, 8))
    server.datagrams_to_send()
    server.receive_datagram(build_error(0, "x" * 1400)[:-1], 0.0)  # unterminated (B12)
    assert server.state is State.FAILED
    assert server.datagrams_to_send() == []
    assert server.get_timer() is None
    event = server.next_event()
    assert isinstance(event, TransferFailed)
    assert event.outcome == "client_error"
    assert len(event.reason) < 300
    server.receive_datagram(build_ack(1), 1.0)  # after the end: ignored
    assert server.datagrams_to_send() == []


def test_garbage_raises_remote_error_and_transfer_continues():
    content = _content(2, 512, 9)
    server = make_transfer(content)
    server.datagrams_to_send()
    for junk in (b"", b"\x00", b"\x00\x04\x00", b"\x00\x09zz", b"\x00\x04\x00\x01\x00"):
        with pytest.raises(RemoteProtocolError):
            server.receive_datagram(junk, 0.0)
    server.receive_datagram(b"\x00\x03\x00\x01abc", 0.0)  # DATA to a reader: dropped
    assert server.datagrams_to_send() == []
    server.receive_datagram(build_ack(1), 0.0)
    assert parse_packet(server.datagrams_to_send()[0]) == Data(2, content[512:])


def test_error_after_oack_is_a_size_probe():
    # edk2 and other PXE firmware: RRQ with tsize, read the OACK, ERROR 8, then the real RRQ.
    server = make_transfer(_content(3, 512, 12), (("tsize", "0"), ("blksize", "1468")))
    server.datagrams_to_send()
    server.receive_datagram(build_error(8, "User aborted the transfer"), 0.0)
    event = server.next_event()
    assert isinstance(event, TransferFailed)
    assert event.outcome == "probe"
    assert server.datagrams_to_send() == []


def test_abort_sends_error_and_fails():
    server = make_transfer(_content(3, 512, 10))
    server.datagrams_to_send()
    server.abort("bye")
    assert parse_packet(server.datagrams_to_send()[0]) == ErrorPacket(0, "bye")
    assert isinstance(server.next_event(), TransferFailed)
    server.abort("again")
    assert server.datagrams_to_send() == []


def test_final_ack_lost_client_reacks_resent_block():
    content = _content(2.5, 512, 11)
    server = make_transfer(content)
    client = MemoryClient()
    # Drop exactly the client's final ACK once.
    dropped = {"done": False}

    class DropFinal(Wire):
        def put(self, datagrams):
            for d in datagrams:
                if d == build_ack(3) and not dropped["done"]:
                    dropped["done"] = True
                    continue
                super().put([d])

    rng = random.Random(1)
    roundtrip_until_done(server, client, Wire(rng), DropFinal(rng))
    assert dropped["done"]
    assert server.state is State.DONE
    assert bytes(client.received) == content


def test_ended_flag_and_late_datagrams_after_the_end():
    content = _content(2.5, 512, 11)
    server = make_transfer(content)
    assert not server.ended
    for block in (1, 2):
        server.datagrams_to_send()
        server.receive_datagram(build_ack(block), 0.1)
        assert not server.ended
    server.receive_datagram(build_ack(3), 0.2)
    assert server.ended
    assert server.state is State.DONE
    assert isinstance(server.next_event(), TransferComplete)
    # Anything after the end, even garbage or an ERROR, is ignored: nothing sent, no event.
    server.datagrams_to_send()
    for late in (build_ack(3), b"garbage", build_error(0, "late")):
        server.receive_datagram(late, 0.3)
    assert server.datagrams_to_send() == []
    assert server.next_event() is None
    assert server.state is State.DONE


def test_states_hash_by_identity_for_the_transition_table():
    # Enum's default hash is Python code; the table relies on the C identity hash.
    assert hash(State.SENDING) == object.__hash__(State.SENDING)
    assert hash(_Trigger.ACK_PROGRESS) == object.__hash__(_Trigger.ACK_PROGRESS)
    assert State("sending") is State.SENDING  # lookup by value still works
    assert {State.SENDING: 1}[State.SENDING] == 1


def test_transition_table_rejects_undefined_moves():
    server = make_transfer(b"")
    server.state = State.DONE
    with pytest.raises(LocalProtocolError):
        server._transition(_Trigger.ACK_PROGRESS)
