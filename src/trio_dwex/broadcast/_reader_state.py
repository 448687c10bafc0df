"""Where one topic's Redis reader stands: its phase, its place in the stream, its backoff.

Theory of operation. The reader of a topic (`RedisBackend`'s reader task, in ``_redis``) works
in *attempts*: an attempt sends a few commands and, if every one of them succeeds, delivers
the entries it read. What an attempt must send depends on what happened before it:

* the reader has no place in the stream yet: it first reads the stream's incarnation and its
  last id, and starts after that id (`ReaderState.must_start`);
* a command failed since the last attempt that succeeded: Redis may have restarted, lost the
  stream or trimmed past the reader meanwhile, so the reader checks the stream's incarnation
  (`ReaderState.checks_incarnation`) and looks for a gap with ``XINFO STREAM``
  (`ReaderState.checks_gap`) before it delivers more;
* the gap check found no stream at all: the reader looks again on every attempt, until the
  stream is there to be compared.

`ReaderState` holds all of that in one object: a `ReaderPhase`, the reader's place (the last
id it read, how many entries the stream had had added up to it, the stream's incarnation) and
the pause before its next attempt. The reader asks it what to send and tells it what happened,
through the transitions below; nothing else changes it. It does no I/O.

States and transitions, one row per phase (``-``: the transition raises `ReaderStateError`,
which names the phase and the transition; the reader never takes one, unless it has a bug):

=============  =========  =========  ========  ======================  ===========  =======  =======
phase          started    made_anew  failed    answered                advanced,    stopped  crashed
                                                                       recounted
=============  =========  =========  ========  ======================  ===========  =======  =======
STARTING       STARTING   -          RETRYING  READING                 -            STOPPED  CRASHED
READING        -          -          RETRYING  READING                 READING      STOPPED  CRASHED
RETRYING       RETRYING   RETRYING   RETRYING  READING, STREAM_GONE    -            STOPPED  CRASHED
STREAM_GONE    -          -          RETRYING  READING, STREAM_GONE    STREAM_GONE  STOPPED  CRASHED
STOPPED        -          -          -         -                       -            -        -
CRASHED        -          -          -         -                       -            -        -
=============  =========  =========  ========  ======================  ===========  =======  =======

``answered`` leads to STREAM_GONE when the attempt had to look for a gap and found no stream.
``started`` also needs a reader with no place yet; ``made_anew``, ``advanced`` and
``recounted`` need one with a place. The table is `_TRANSITIONS`, as data.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["ReaderPhase", "ReaderState", "ReaderStateError"]


class ReaderPhase(enum.Enum):
    """The phase of a topic's reader (see the table in this module's docstring)."""

    #: No attempt has succeeded yet; the first one finds the reader's place in the stream.
    STARTING = "starting"
    #: The last attempt succeeded: read on from the last id, nothing to check.
    READING = "reading"
    #: A command failed: wait, then check the incarnation and look for a gap before delivering.
    RETRYING = "retrying"
    #: Redis answers again, but the stream was not there to look for a gap: look again.
    STREAM_GONE = "stream_gone"
    #: The reader's task ended: unused for long enough, or cancelled with its backend.
    STOPPED = "stopped"
    #: The reader's task failed with a bug (logged); its topic's subscriptions were ended.
    CRASHED = "crashed"


class ReaderStateError(RuntimeError):
    """A transition that the reader's phase does not allow: a bug in the reader.

    The message names the phase and the transition, and why when the phase alone allows it.
    """

    def __init__(self, phase: ReaderPhase, transition: str, why: str = "") -> None:
        self.phase = phase
        self.transition = transition
        message = f"a topic reader in phase {phase.name} cannot take the transition {transition!r}"
        super().__init__(f"{message}: {why}" if why else message)


_S = ReaderPhase

#: Each phase's transitions and the phase each leads to: the table of the module docstring.
#: ``answered_without_stream`` is ``answered`` after a gap check that found no stream.
_TRANSITIONS: Final[dict[ReaderPhase, dict[str, ReaderPhase]]] = {
    _S.STARTING: {
        "started": _S.STARTING,
        "failed": _S.RETRYING,
        "answered": _S.READING,
        "stopped": _S.STOPPED,
        "crashed": _S.CRASHED,
    },
    _S.READING: {
        "failed": _S.RETRYING,
        "answered": _S.READING,
        "advanced": _S.READING,
        "recounted": _S.READING,
        "stopped": _S.STOPPED,
        "crashed": _S.CRASHED,
    },
    _S.RETRYING: {
        "started": _S.RETRYING,
        "made_anew": _S.RETRYING,
        "failed": _S.RETRYING,
        "answered": _S.READING,
        "answered_without_stream": _S.STREAM_GONE,
        "stopped": _S.STOPPED,
        "crashed": _S.CRASHED,
    },
    _S.STREAM_GONE: {
        "failed": _S.RETRYING,
        "answered": _S.READING,
        "answered_without_stream": _S.STREAM_GONE,
        "advanced": _S.STREAM_GONE,
        "recounted": _S.STREAM_GONE,
        "stopped": _S.STOPPED,
        "crashed": _S.CRASHED,
    },
    _S.STOPPED: {},
    _S.CRASHED: {},
}


class ReaderState:
    """One topic reader's phase, place in the stream and backoff; changed by its transitions.

    Args:
        backoff_initial: the pause after a first failed command.
        backoff_max: the longest pause; each failure in a row doubles it up to this.
    """

    __slots__ = (
        "_backoff",
        "_incarnation",
        "_last_id",
        "_offset",
        "_phase",
        "backoff_initial",
        "backoff_max",
    )

    def __init__(self, backoff_initial: float, backoff_max: float) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._phase = ReaderPhase.STARTING
        self._backoff = backoff_initial
        self._last_id: str | None = None
        self._offset = 0
        self._incarnation = ""

    def __repr__(self) -> str:
        return (
            f"<ReaderState {self._phase.name} last_id={self._last_id!r} offset={self._offset} "
            f"incarnation={self._incarnation!r}>"
        )

    # -- what the reader asks -----------------------------------------------------------------

    @property
    def phase(self) -> ReaderPhase:
        """The current phase."""
        return self._phase

    @property
    def has_place(self) -> bool:
        """True once the reader knows where in the stream it reads from."""
        return self._last_id is not None

    @property
    def last_id(self) -> str:
        """The id the reader reads after: the last entry it read (``"0-0"``: the start)."""
        if self._last_id is None:
            raise ReaderStateError(self._phase, "last_id", "the reader has no place yet")
        return self._last_id

    @property
    def offset(self) -> int:
        """How many entries the stream had had added up to `last_id` (``entries-added``)."""
        return self._offset

    @property
    def incarnation(self) -> str:
        """The stream's incarnation when the reader started or last saw it made anew."""
        return self._incarnation

    @property
    def must_start(self) -> bool:
        """The next attempt must find the reader's place first (incarnation and last id)."""
        return self._last_id is None and self._phase in (ReaderPhase.STARTING, ReaderPhase.RETRYING)

    @property
    def checks_incarnation(self) -> bool:
        """The next attempt must check that the stream is the one the reader started on."""
        return self._phase is ReaderPhase.RETRYING and self._last_id is not None

    @property
    def checks_gap(self) -> bool:
        """The next attempt must compare the stream with the reader's count (``XINFO``)."""
        return self._phase in (ReaderPhase.RETRYING, ReaderPhase.STREAM_GONE)

    @property
    def is_finished(self) -> bool:
        """True once the reader's task has ended, stopped or crashed."""
        return self._phase in (ReaderPhase.STOPPED, ReaderPhase.CRASHED)

    # -- what the reader tells ----------------------------------------------------------------

    def started(self, last_id: str, offset: int, incarnation: str) -> None:
        """The reader's place: after ``last_id``, the ``offset``-th entry ever added to the
        stream of incarnation ``incarnation``."""
        if self._last_id is not None:
            raise ReaderStateError(
                self._phase, "started", f"the reader reads after id {self._last_id} already"
            )
        self._go("started")
        self._last_id, self._offset, self._incarnation = last_id, offset, incarnation

    def made_anew(self, incarnation: str, trimmed: int) -> None:
        """The stream is another incarnation: read it from its start, of which ``trimmed``
        entries are gone already."""
        self._need_place("made_anew")
        self._go("made_anew")
        self._last_id, self._offset, self._incarnation = "0-0", trimmed, incarnation

    def failed(self) -> float:
        """A command of the attempt failed; returns how long to wait before the next one."""
        self._go("failed")
        pause = self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max)
        return pause

    def answered(self, *, stream_seen: bool) -> None:
        """Every command of the attempt succeeded; ``stream_seen``: its ``XINFO`` found the
        stream (a gap check that found none must be made again)."""
        self._go("answered" if stream_seen or not self.checks_gap else "answered_without_stream")
        self._backoff = self.backoff_initial

    def advanced(self, entry_id: str) -> None:
        """The reader read the entry ``entry_id``, the next one of the stream."""
        self._need_place("advanced")
        self._go("advanced")
        self._last_id = entry_id
        self._offset += 1

    def recounted(self, offset: int) -> None:
        """Entries after the last id are gone unread (the subscribers were told): count on
        from ``offset``, the entries the stream had had added before what it holds now."""
        self._need_place("recounted")
        self._go("recounted")
        self._offset = offset

    def stopped(self) -> None:
        """The reader's task ended without a bug: unused, or cancelled with its backend."""
        self._go("stopped")

    def crashed(self) -> None:
        """The reader's task ended with a bug."""
        self._go("crashed")

    def _go(self, transition: str) -> None:
        new = _TRANSITIONS[self._phase].get(transition)
        if new is None:
            raise ReaderStateError(self._phase, transition)
        self._phase = new

    def _need_place(self, transition: str) -> None:
        if self._last_id is None:
            raise ReaderStateError(self._phase, transition, "the reader has no place yet")
