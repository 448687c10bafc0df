"""An `SseStream`'s lifecycle as data: its state, why it closed, and the legal transitions.

A stream's state is two values, both owned by the stream and changed only by its own methods:

* its **state** (`StreamState`), which only the runner moves forward, one way;
* its **close reason** (`CloseReason`): ``None`` while producers may still queue events; set
  once, by ``close(reason=...)`` (the producer, or the overflow policy) or by the end of the
  response that ran it. The first reason given stays.

States and transitions (anything not in the table raises `StreamStateError`)::

    state      start (the run begins)   end (the run is ending)   finish (the run is over)
    ---------  -----------------------  ------------------------  ------------------------
    NEW        RUNNING                  -                         -
    RUNNING    -                        ENDING                    FINISHED
    ENDING     -                        ENDING (no-op)            FINISHED
    FINISHED   -                        FINISHED (no-op)          -

``close`` is legal in every state and only sets the close reason, once; a stream can be
closed before it runs (its queued events are still delivered), while it runs, or while it
ends. ``finish`` closes it if nothing did before, with the response's reason. ``end`` may
arrive more than once (a disconnect during a shutdown, a callback after the end): only the
first counts, as for the reason.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

__all__ = ["CloseReason", "StreamState", "StreamStateError", "Transition", "next_state"]


class StreamState(enum.Enum):
    """Where an `SseStream` is in its life; read it as ``stream.state``."""

    #: Made, not yet run: events queue in its buffer and ``start_soon`` tasks wait for the run.
    NEW = "new"
    #: A response runs it: its tasks run in the response's nursery and its buffer is read.
    RUNNING = "running"
    #: The response is ending (the client left, shutdown, an error, the lifetime, or the events
    #: ran out): its nursery is cancelled, and its tasks stop at their next ``send``.
    ENDING = "ending"
    #: The response is over and has taken the ``on_close`` callbacks; it cannot be used again.
    FINISHED = "finished"


class CloseReason(enum.Enum):
    """Why a stream ended; `StreamTracker` counts them."""

    #: The async-iterable source was exhausted.
    COMPLETED = "completed"
    #: ``SseStream.close()`` was called and the queued events were delivered.
    CLOSED = "closed"
    #: The client disconnected.
    CLIENT_GONE = "client_gone"
    #: The client accepted no bytes for ``send_timeout`` seconds.
    SLOW_CLIENT = "slow_client"
    #: ``send_nowait`` found the buffer full under `OverflowPolicy.CLOSE`.
    OVERFLOW = "overflow"
    #: The stream reached ``max_lifetime``; the client reconnects (and may land elsewhere).
    LIFETIME = "lifetime"
    #: The server is shutting down.
    SHUTDOWN = "shutdown"
    #: The stream's lease expired (a guard gave it an end: `StreamLease.expire_at`).
    EXPIRED = "expired"
    #: The app ended it on purpose (`StreamTracker.close_where`: a user logged out, say).
    REVOKED = "revoked"
    #: The source or one of the stream's tasks raised.
    ERROR = "error"


Transition = Literal["start", "end", "finish"]
"""What the runner does to a stream: run it, begin to end it, take its callbacks."""

_NEW, _RUNNING, _ENDING, _FINISHED = StreamState

_TRANSITIONS: Final[dict[tuple[StreamState, Transition], StreamState]] = {
    (_NEW, "start"): _RUNNING,
    (_RUNNING, "end"): _ENDING,
    (_ENDING, "end"): _ENDING,
    (_FINISHED, "end"): _FINISHED,
    (_RUNNING, "finish"): _FINISHED,
    (_ENDING, "finish"): _FINISHED,
}

# Why each transition can fail, for the error message: the rule, and what to do instead.
_RULES: Final[dict[Transition, str]] = {
    "start": "an SseStream can be run only once; return a new one per request",
    "end": "only a stream that runs can end",
    "finish": "a stream finishes once, after it ran",
}


class StreamStateError(RuntimeError):
    """A transition that the stream's state does not allow; the message names both.

    Attributes:
        state: the state the stream was in.
        transition: what was attempted.
    """

    def __init__(self, state: StreamState, transition: Transition) -> None:
        self.state = state
        self.transition = transition
        super().__init__(
            f"cannot {transition} an SseStream in state {state.name}: {_RULES[transition]}"
        )


def next_state(state: StreamState, transition: Transition) -> StreamState:
    """The state after ``transition`` from ``state``.

    Raises:
        StreamStateError: the table does not allow ``transition`` from ``state``.
    """
    try:
        return _TRANSITIONS[state, transition]
    except KeyError:
        raise StreamStateError(state, transition) from None
