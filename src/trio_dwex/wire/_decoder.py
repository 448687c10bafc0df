"""An incremental event-stream decoder that follows the WHATWG HTML spec, bytes in, events out.

This is the "event stream interpretation" of the HTML standard (section 9.2.6), as an
EventSource does it: feed it bytes in chunks of any size and it returns the events each chunk
completes. It never raises on input, whatever the bytes: a client must survive a broken server.

Theory of operation: bytes become text through an incremental UTF-8 decoder (invalid bytes are
replaced with U+FFFD, as the spec requires); text is cut into lines at CRLF, CR or LF, keeping
the unfinished tail for the next chunk; each line updates three buffers (data, event type, last
event id) and a blank line dispatches. Only the line loop is Python-level; splitting is done by
``str`` methods in C, which is what makes the decoder fit for a load generator.

Sans-IO: this module imports only the standard library.
"""

from __future__ import annotations

import codecs
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast, overload

__all__ = ["Comment", "MessageEvent", "SseDecoder"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageEvent:
    """A dispatched event, as a browser's ``MessageEvent`` would see it.

    ``id`` is the last event id in force at dispatch (it persists across events until the
    stream changes it, ``""`` if none); ``retry`` is the reconnection time in force in
    milliseconds, ``None`` until the stream sets one. Keyword-only, so the field order is free.
    """

    type: str = "message"
    data: str
    id: str = ""
    retry: int | None = None

    def json(self) -> Any:
        """``data`` parsed as JSON, the usual payload; raises ``json.JSONDecodeError`` if not."""
        return json.loads(self.data)


@dataclass(frozen=True, slots=True)
class Comment:
    """A ``:`` line, returned only by ``SseDecoder(comments=True)``.

    ``text`` is the line without the colon and one leading space, mirroring how field values are
    read, so ``SseEvent(comment="keep-alive")`` decodes back to ``Comment("keep-alive")``.
    """

    text: str


_ItemT = TypeVar("_ItemT", bound=MessageEvent | Comment)


class SseDecoder(Generic[_ItemT]):
    """Incremental, WHATWG-conformant decoder for ``text/event-stream`` bytes.

    ``SseDecoder()`` yields :class:`MessageEvent` only, which is what almost every caller
    wants; ``SseDecoder(comments=True)`` also yields :class:`Comment` items in stream order
    (useful to observe keep-alives in tests).

    One decoder reads one stream; after :meth:`close` it is ready for the next connection and
    keeps :attr:`last_event_id` and :attr:`retry`, which is what a reconnecting client needs
    (send ``Last-Event-ID``, wait ``retry`` ms). As the spec says, the next stream's own id
    buffer starts empty.
    """

    @overload
    def __init__(self: SseDecoder[MessageEvent], *, comments: Literal[False] = False) -> None: ...
    @overload
    def __init__(self: SseDecoder[MessageEvent | Comment], *, comments: Literal[True]) -> None: ...
    def __init__(self, *, comments: bool = False) -> None:
        self._comments = comments
        self._last_event_id = ""
        self._retry: int | None = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._at_start = True  # a BOM is stripped only before the first character
        self._after_cr = False  # last chunk ended in CR: an LF opening the next one is its pair
        self._tail: list[str] = []  # the unfinished line, in pieces to avoid quadratic joins
        self._data: list[str] = []
        self._type = ""
        self._id_buffer = ""

    @property
    def last_event_id(self) -> str:
        """The last event id set by a dispatch (a blank line), ``""`` if none yet."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time in milliseconds last set by the stream, or ``None``."""
        return self._retry

    def feed(self, data: bytes) -> list[_ItemT]:
        """Decode one chunk; return the events (and comments, if asked) it completes, in order."""
        text = self._utf8.decode(data)
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._after_cr and text[:1] == "\n":
            text = text[1:]
        self._after_cr = text[-1:] == "\r"
        if "\r" in text:
            # CRLF first, so that it counts once; then lone CRs. A CR ending this chunk is a
            # complete line end now; _after_cr drops the LF that may open the next chunk.
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text:
            self._tail.append(text)
            return []
        lines = text.split("\n")
        if self._tail:
            self._tail.append(lines[0])
            lines[0] = "".join(self._tail)
        rest = lines.pop()
        self._tail = [rest] if rest else []
        out: list[MessageEvent | Comment] = []
        for line in lines:
            self._line(line, out)
        return cast("list[_ItemT]", out)

    def close(self) -> list[_ItemT]:
        """End of stream: an unfinished event is discarded, per the spec; get ready for the next.

        Always returns ``[]``; it returns a list so that callers can treat it like :meth:`feed`.
        """
        self._reset_stream()
        return []

    def _line(self, line: str, out: list[MessageEvent | Comment]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line[0] == ":":
            if self._comments:
                text = line[1:]
                out.append(Comment(text[1:] if text[:1] == " " else text))
            return
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # More digits than int() accepts (sys.get_int_max_str_digits) is no sane delay.
            with contextlib.suppress(ValueError):
                self._retry = int(value)
        # Any other field name is ignored, as the spec says.

    def _dispatch(self, out: list[MessageEvent | Comment]) -> None:
        self._last_event_id = self._id_buffer
        if not self._data:
            # No data line at all (the spec's "empty data buffer"): nothing is dispatched.
            self._type = ""
            return
        out.append(
            MessageEvent(
                type=self._type or "message",
                data="\n".join(self._data),
                id=self._last_event_id,
                retry=self._retry,
            )
        )
        self._data = []
        self._type = ""
