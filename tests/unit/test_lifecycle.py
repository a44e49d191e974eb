"""Every legal and every illegal transition of the lifecycle table."""

from __future__ import annotations

import itertools

import pytest

from provisioner.lifecycle import (
    TRANSITIONS,
    IllegalTransitionError,
    Signal,
    StageTimeouts,
    is_legal,
    next_state,
    retry_delay,
    stage_timeout,
)
from provisioner.model import MachineState as S

HAPPY_PATH = [
    (S.REGISTERED, Signal.PROVISION, S.POWERING_ON),
    (S.POWERING_ON, Signal.POWERED_ON, S.NETBOOTING),
    (S.NETBOOTING, Signal.CONFIG_SERVED, S.CONFIG_SERVED),
    (S.CONFIG_SERVED, Signal.TRUSTED, S.TRUSTED),
    (S.TRUSTED, Signal.SETTLED, S.PROVISIONED),
]


def test_happy_path() -> None:
    state = S.REGISTERED
    for before, signal, after in HAPPY_PATH:
        assert state == before
        state = next_state(state, signal)
        assert state == after


@pytest.mark.parametrize(("state", "signal"), list(itertools.product(S, Signal)))
def test_every_pair_is_either_in_the_table_or_refused(state: S, signal: Signal) -> None:
    if (state, signal) in TRANSITIONS:
        assert is_legal(state, signal)
        assert next_state(state, signal) == TRANSITIONS[(state, signal)]
    else:
        assert not is_legal(state, signal)
        with pytest.raises(IllegalTransitionError, match=state.value):
            next_state(state, signal)


def test_expected_table_size_and_key_rules() -> None:
    # deprovision is allowed from every state but Discovered and Deprovisioning itself
    deprov = {s for (s, sig) in TRANSITIONS if sig == Signal.DEPROVISION}
    assert deprov == set(S) - {S.DISCOVERED, S.DEPROVISIONING}
    # every active stage can fail, and failing never skips to a success state
    for state in (
        S.POWERING_ON,
        S.NETBOOTING,
        S.CONFIG_SERVED,
        S.INSTALLING,
        S.REBOOTING,
        S.BOOTED_FROM_DISK,
        S.TRUSTED,
        S.DEPROVISIONING,
    ):
        assert next_state(state, Signal.FAILED) == S.FAILED
    # Provisioned is reachable only from Trusted: "boot from disk" needs proof of install
    assert [k for k, v in TRANSITIONS.items() if v == S.PROVISIONED] == [(S.TRUSTED, Signal.SETTLED)]
    # a retry only leaves Failed
    assert [k for k in TRANSITIONS if k[1] == Signal.RETRY] == [(S.FAILED, Signal.RETRY)]
    assert not is_legal(S.NETBOOTING, Signal.PROVISION)  # no double start of a run
    # the node's install stages: each moves forward only, and every one can be trusted
    assert next_state(S.CONFIG_SERVED, Signal.INSTALLING) == S.INSTALLING
    assert next_state(S.INSTALLING, Signal.INSTALLED) == S.REBOOTING
    assert next_state(S.REBOOTING, Signal.BOOTED) == S.BOOTED_FROM_DISK
    assert not is_legal(S.BOOTED_FROM_DISK, Signal.INSTALLING)
    assert not is_legal(S.PROVISIONED, Signal.INSTALLED)
    for state in (S.CONFIG_SERVED, S.INSTALLING, S.REBOOTING, S.BOOTED_FROM_DISK):
        assert next_state(state, Signal.TRUSTED) == S.TRUSTED
    # the web layer's "script fetched" only ever lands in Netbooting, and only from the
    # states whose stage-two answer is an install script (web/policy.py)
    fetched = {s for (s, sig) in TRANSITIONS if sig == Signal.SCRIPT_FETCHED}
    assert fetched == {S.REGISTERED, S.POWERING_ON, S.NETBOOTING}
    assert {TRANSITIONS[(s, Signal.SCRIPT_FETCHED)] for s in fetched} == {S.NETBOOTING}
    assert len(TRANSITIONS) == 38


def test_retry_backoff_is_bounded() -> None:
    t = StageTimeouts(max_attempts=4, retry_base_s=10, retry_max_s=25)
    assert [retry_delay(a, t) for a in range(6)] == [10.0, 10.0, 20.0, 25.0, None, None]


def test_stage_timeouts() -> None:
    t = StageTimeouts(powering_on=1, dhcp=2, script=3, config=4, trust=5, deprovisioning=6)
    assert stage_timeout(S.POWERING_ON, t) == 1
    assert stage_timeout(S.NETBOOTING, t) == 9
    assert stage_timeout(S.CONFIG_SERVED, t) == 5
    assert stage_timeout(S.PROVISIONED, t) is None
    assert stage_timeout(S.REGISTERED, t) is None
