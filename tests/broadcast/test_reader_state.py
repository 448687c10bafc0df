"""The Redis reader's state machine, without Redis: every phase against every transition."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from trio_dwex.broadcast._reader_state import ReaderPhase, ReaderState, ReaderStateError

P = ReaderPhase

#: Each transition, as the reader takes it.
TRANSITIONS: dict[str, Callable[[ReaderState], object]] = {
    "started": lambda state: state.started("5-0", 5, "inc"),
    "made_anew": lambda state: state.made_anew("other", 0),
    "failed": lambda state: state.failed(),
    "answered": lambda state: state.answered(stream_seen=True),
    "answered_without_stream": lambda state: state.answered(stream_seen=False),
    "advanced": lambda state: state.advanced("6-0"),
    "recounted": lambda state: state.recounted(3),
    "stopped": lambda state: state.stopped(),
    "crashed": lambda state: state.crashed(),
}

#: Where each transition leads from each phase (for a reader with a place in the stream,
#: except ``started``, taken by one without); missing: refused. Written out again here, not
#: read from the module, so that a change to the module's table must be made twice.
EXPECTED: dict[ReaderPhase, dict[str, ReaderPhase]] = {
    P.STARTING: {
        "started": P.STARTING,
        "failed": P.RETRYING,
        "answered": P.READING,
        "answered_without_stream": P.READING,  # no gap check is due: the stream is not looked for
        "stopped": P.STOPPED,
        "crashed": P.CRASHED,
    },
    P.READING: {
        "failed": P.RETRYING,
        "answered": P.READING,
        "answered_without_stream": P.READING,
        "advanced": P.READING,
        "recounted": P.READING,
        "stopped": P.STOPPED,
        "crashed": P.CRASHED,
    },
    P.RETRYING: {
        "started": P.RETRYING,
        "made_anew": P.RETRYING,
        "failed": P.RETRYING,
        "answered": P.READING,
        "answered_without_stream": P.STREAM_GONE,
        "stopped": P.STOPPED,
        "crashed": P.CRASHED,
    },
    P.STREAM_GONE: {
        "failed": P.RETRYING,
        "answered": P.READING,
        "answered_without_stream": P.STREAM_GONE,
        "advanced": P.STREAM_GONE,
        "recounted": P.STREAM_GONE,
        "stopped": P.STOPPED,
        "crashed": P.CRASHED,
    },
    P.STOPPED: {},
    P.CRASHED: {},
}

#: How to bring a fresh state to each phase, with a place in the stream.
ROUTES: dict[ReaderPhase, list[str]] = {
    P.STARTING: ["started"],
    P.READING: ["started", "answered"],
    P.RETRYING: ["started", "failed"],
    P.STREAM_GONE: ["started", "failed", "answered_without_stream"],
    P.STOPPED: ["stopped"],
    P.CRASHED: ["crashed"],
}


def in_phase(phase: ReaderPhase, *, placed: bool = True) -> ReaderState:
    state = ReaderState(backoff_initial=0.05, backoff_max=0.2)
    for transition in ROUTES[phase]:
        if transition != "started" or placed:
            TRANSITIONS[transition](state)
    assert state.phase is phase
    assert state.has_place is (placed and phase not in (P.STOPPED, P.CRASHED))
    return state


@pytest.mark.parametrize("transition", list(TRANSITIONS))
@pytest.mark.parametrize("phase", list(ReaderPhase), ids=lambda phase: phase.name)
def test_every_phase_against_every_transition(phase: ReaderPhase, transition: str) -> None:
    # ``started`` is taken by a reader with no place yet; the others by one with a place.
    state = in_phase(phase, placed=transition != "started")
    expected = EXPECTED[phase].get(transition)
    if expected is None:
        with pytest.raises(ReaderStateError) as raised:
            TRANSITIONS[transition](state)
        error = raised.value
        name = "answered" if transition == "answered_without_stream" else transition
        assert phase.name in str(error)
        assert error.phase is phase
        assert error.transition.startswith(name)
        assert state.phase is phase  # a refused transition changes nothing
    else:
        TRANSITIONS[transition](state)
        assert state.phase is expected


@pytest.mark.parametrize("transition", ["made_anew", "advanced", "recounted"])
def test_transitions_that_need_a_place_say_so(transition: str) -> None:
    state = in_phase(P.RETRYING, placed=False)
    with pytest.raises(ReaderStateError, match=rf"RETRYING.*{transition}.*no place yet"):
        TRANSITIONS[transition](state)
    with pytest.raises(ReaderStateError, match="no place yet"):
        state.last_id  # noqa: B018


def test_a_reader_starts_once() -> None:
    state = in_phase(P.RETRYING)
    with pytest.raises(ReaderStateError, match=r"RETRYING.*'started'.*after id 5-0 already"):
        state.started("7-0", 7, "inc")
    assert (state.last_id, state.offset) == ("5-0", 5)


def test_an_outage_and_a_stream_made_anew() -> None:
    state = ReaderState(backoff_initial=0.05, backoff_max=0.2)
    assert (state.must_start, state.checks_incarnation, state.checks_gap) == (True, False, False)
    # Redis is away before the reader has found its place: it starts again, and checks.
    assert state.failed() == 0.05
    assert (state.must_start, state.checks_incarnation, state.checks_gap) == (True, False, True)
    state.started("0-0", 0, "first")
    state.answered(stream_seen=True)
    assert (state.phase, state.checks_gap) == (P.READING, False)
    state.advanced("1-0")
    state.advanced("2-0")
    assert (state.last_id, state.offset) == ("2-0", 2)
    # Away again: the pause doubles up to backoff_max, and comes back to backoff_initial.
    assert [state.failed() for _ in range(4)] == [0.05, 0.1, 0.2, 0.2]
    assert (state.must_start, state.checks_incarnation, state.checks_gap) == (False, True, True)
    state.made_anew("second", 7)
    assert (state.last_id, state.offset, state.incarnation) == ("0-0", 7, "second")
    # The stream is not there when it looks for a gap: it looks again next time.
    state.answered(stream_seen=False)
    assert (state.phase, state.checks_incarnation, state.checks_gap) == (
        P.STREAM_GONE,
        False,
        True,
    )
    state.answered(stream_seen=True)
    assert (state.phase, state.checks_gap) == (P.READING, False)
    assert state.failed() == 0.05
    state.stopped()
    assert state.is_finished
