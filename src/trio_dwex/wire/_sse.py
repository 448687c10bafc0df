"""Server-Sent Events as values, and their bytes on the wire.

An :class:`SseEvent` is checked and encoded once, when it is built: a field that would break the
framing raises ``ValueError`` in the handler that made it, not later in a stream task, and one
event broadcast to thousands of clients costs one encoding.

Non-string ``data`` goes through the serializer in force (:func:`current_serializer`), compact
JSON by default. The app swaps it per request with :func:`use_serializer`, so handler code keeps
writing ``SseEvent(data={...})`` whatever serializer the app was configured with.

Sans-IO: this module imports only the standard library.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import decimal
import enum
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

from .._unset import UNSET

__all__ = [
    "Serializer",
    "SseEvent",
    "current_serializer",
    "escape_surrogates",
    "json_serializer",
    "replace_surrogates",
    "to_event",
    "use_serializer",
]

Serializer: TypeAlias = Callable[[Any], str | bytes]
"""Turns a ``data`` value into text; ``bytes`` results (orjson, msgspec) are decoded as UTF-8."""

# The three line ends of the event-stream grammar. Not str.splitlines(), which also splits on
# \x0b, \x1c, \u2028 and friends: those are ordinary characters to an EventSource.
_LINE_END: Final = re.compile(r"\r\n|\r|\n")


# A UTF-16 surrogate code point (U+D800 to U+DFFF). Python strings may hold one on its own
# ("lone"): ``json.loads('"\\ud800"')`` makes one, as JavaScript's JSON.parse does. UTF-8 has
# no encoding for it, so it must be escaped or replaced before text goes on the wire.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
#: What HTTP trims from both ends of a header value.
_BLANKS: Final = " \t"
#: Characters an HTTP header value cannot hold (RFC 9110 field-value): C0 controls but TAB,
#: and DEL. CR, LF and NUL are refused earlier with their own messages.
_HEADER_CONTROL: Final = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def json_serializer(value: Any) -> str:
    """Compact JSON: the default serializer.

    Beyond what ``json`` takes, it encodes what orjson encodes natively, so that swapping one
    for the other changes speed, not output: dataclass instances as objects, ``datetime``,
    ``date`` and ``time`` in ISO 8601, enums by value, UUIDs as strings; and, which orjson
    refuses, a ``Decimal`` as a string of its digits. A handler's ``Body()`` decodes each of
    them back from what this writes.

    ``allow_nan=False`` because ``NaN`` and ``Infinity`` are not JSON and ``JSON.parse`` in the
    browser would reject the event; better to fail where the value was made.

    Non-ASCII text is written as is, except surrogate code points (a lone ``"\\ud800"`` that
    ``json.loads`` accepted from a client), which UTF-8 cannot carry: each is written as its
    JSON escape, ``\\ud800``, so ``JSON.parse`` gives back exactly the string that was parsed.
    The output is therefore always encodable as UTF-8.
    """
    text = _JSON_ENCODER.encode(value)
    if text.isascii():  # O(1) in CPython: most payloads pay nothing more
        return text
    try:
        # Three times faster than searching for a surrogate with a regular expression.
        text.encode()
    except UnicodeEncodeError:
        return escape_surrogates(text)
    return text


def escape_surrogates(json_text: str) -> str:
    """``json_text`` (a JSON document) with every surrogate code point written as ``\\uXXXX``.

    In JSON output a surrogate can only stand inside a string, where its escape is valid and
    decodes back to the same code point, so the document means exactly what it meant before,
    and it now encodes as UTF-8.
    """
    return _SURROGATE.sub(_surrogate_escape, json_text)


def _surrogate_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match[0]):04x}"


def replace_surrogates(text: str) -> str:
    """``text`` with every surrogate code point replaced by U+FFFD, so that it encodes as UTF-8.

    For text that is not JSON, where no escape exists: U+FFFD is what a client decoding the
    bytes of a lone surrogate (as Python's ``surrogatepass`` would write them) shows anyway.
    """
    return _SURROGATE.sub("\ufffd", text)


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)  # a Decimal as a string keeps every digit, which a JSON number may not
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# One encoder for every event: ``json.dumps`` with any argument other than its defaults builds
# a new ``JSONEncoder`` on each call, a quarter of what a small payload costs to encode. An
# encoder keeps no state between calls, so sharing it is safe (``json.dumps`` shares one too).
_JSON_ENCODER: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
)

_serializer: contextvars.ContextVar[Serializer] = contextvars.ContextVar(
    "trio_dwex_serializer", default=json_serializer
)


def current_serializer() -> Serializer:
    """The serializer that :class:`SseEvent` applies to non-string ``data`` in this context."""
    return _serializer.get()


class use_serializer:  # lower case: it reads as a function, ``with use_serializer(...)``
    """Make ``serializer`` the one in force until the ``with`` block ends.

    Being a context variable, the setting follows the request's task (and the tasks it spawns,
    which copy the context) and never leaks into other requests. Enter and exit in the same
    context: the reset token is bound to it.

    A small class rather than a ``@contextmanager`` generator: every request and every stream
    holds one open for its whole life, so it should cost a few bytes, not a suspended frame.
    """

    __slots__ = ("_serializer", "_token")

    def __init__(self, serializer: Serializer) -> None:
        self._serializer = serializer

    def __enter__(self) -> Serializer:
        self._token = _serializer.set(self._serializer)
        return self._serializer

    def __exit__(self, *exc_info: object) -> None:
        _serializer.reset(self._token)


def _lines(text: str) -> list[str]:
    return _LINE_END.split(text)


class SseEvent:
    """One server-sent event: an immutable value, validated and encoded at construction.

    ``data`` that is a ``str`` is sent as is, one ``data:`` line per line (CR, LF or CRLF);
    `UNSET` (the default) sends no data line: an EventSource does not dispatch such an event,
    but its ``id`` and ``retry`` take effect, and a comment-only one keeps the connection
    alive. Anything else, ``None`` included, is serialized by
    :func:`current_serializer` *now*, so mutating a dict after building the event does not
    change what is sent. ``id=""`` is legitimate: it resets the client's last event id.

    Events compare equal when their five fields do; :meth:`replace` makes a changed copy.

    Text that UTF-8 cannot carry (a lone surrogate such as ``"\\ud800"``, which ``json.loads``
    accepts from a client) is replaced by U+FFFD in ``str`` data and in ``comment``, as a
    client decoding such bytes would show it, and escaped as ``\\uXXXX`` in serialized data,
    which is JSON (the default serializer does it itself, see :func:`json_serializer`).

    Raises ``ValueError`` naming the field when a value would break the framing (CR or LF in
    ``event`` or ``id``, NUL in ``id``), when ``event`` or ``id`` holds a lone surrogate, when
    ``retry`` is not a non-negative ``int``, when ``data`` cannot be serialized, or when the
    event would be empty.
    """

    # A plain class with read-only properties rather than a frozen dataclass: every event of
    # every stream is built here, and a frozen dataclass sets each field through
    # ``object.__setattr__``, which made construction cost twice as much (docs/performance.md).
    __slots__ = ("_comment", "_data", "_data_text", "_encoded", "_event", "_id", "_retry")
    __match_args__ = ("data", "event", "id", "retry", "comment")

    def __init__(
        self,
        data: Any = UNSET,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        self._data = data
        self._event = event
        self._id = id
        self._retry = retry
        self._comment = comment
        # This runs once per event, so it is the hot path of every stream. Most events are
        # one line of text and maybe an id: their checks are one expression, with no call
        # but two scans of the id (``isprintable`` is false for every control character, CR,
        # LF, NUL and TAB included; ``strip`` finds a space at either end). Every other event
        # takes `_checked_text`, which names the field that is wrong.
        if (
            type(data) is str
            and event is None
            and retry is None
            and comment is None
            and "\n" not in data
            and "\r" not in data
            and (id is None or (type(id) is str and id.isprintable() and id.strip(" ") == id))
        ):
            self._data_text: str | None = data
            text = f"data: {data}\n\n" if id is None else f"id: {id}\ndata: {data}\n\n"
        else:
            text = self._checked_text(data)
        try:
            self._encoded = text.encode()
        except UnicodeEncodeError:
            self._encode_surrogates(self._data_text, serialized=type(data) is not str)

    def _checked_text(self, data: Any) -> str:
        """Check every field, serialize ``data`` if it is not text, and return the event's
        text; ``ValueError`` naming the field that would break the framing."""
        event, id, retry, comment = self._event, self._id, self._retry, self._comment
        # Still once per event for JSON data: each check is skipped for a field that is None,
        # and the slow one runs only for a value that may be wrong.
        if event is not None and (type(event) is not str or "\n" in event or "\r" in event):
            _check_line_field("event", event)
        if id is not None and (type(id) is not str or not id.isprintable() or id.strip(" ") != id):
            _check_id(id)
        if retry is not None and (type(retry) is not int or retry < 0):
            _check_retry(retry)
        if comment is not None and not isinstance(comment, str):
            raise ValueError(
                f"SseEvent comment must be a str, got {type(comment).__name__!r}; "
                "pass str(value) to send it as a comment"
            )
        data_text: str | None = data if type(data) is str else _serialize(data)
        self._data_text = data_text
        if (
            data_text is not None
            and event is None
            and retry is None
            and comment is None
            and "\n" not in data_text
            and "\r" not in data_text
        ):
            # Serialized data on one line (compact JSON), maybe an id.
            return f"data: {data_text}\n\n" if id is None else f"id: {id}\ndata: {data_text}\n\n"
        if data_text is None and event is None and id is None and retry is None and comment is None:
            raise ValueError(
                "SseEvent is an empty event: give it at least one of data, comment, "
                "id, event or retry (comment='' makes a bare keep-alive)"
            )
        return self._text(data_text)

    def _encode_surrogates(self, data_text: str | None, *, serialized: bool) -> None:
        """Encode an event whose text holds a lone surrogate, which UTF-8 cannot carry.

        Refused in ``event`` and ``id``; escaped in serialized data, which is JSON (a serializer
        other than the default may leave them in); replaced by U+FFFD in text.
        """
        _refuse_surrogates_in_names(self._event, self._id)
        if data_text is not None:
            data_text = (
                escape_surrogates(data_text) if serialized else replace_surrogates(data_text)
            )
            self._data_text = data_text
        self._encoded = replace_surrogates(self._text(data_text)).encode()

    @property
    def data(self) -> Any:
        """The data as given: a ``str``, `UNSET`, or a value for the serializer."""
        return self._data

    @property
    def event(self) -> str | None:
        """The event type (``event:`` line); ``None`` means the client's ``message``."""
        return self._event

    @property
    def id(self) -> str | None:
        """The event id (``id:`` line) that the client sends back as ``Last-Event-ID``."""
        return self._id

    @property
    def retry(self) -> int | None:
        """Milliseconds the client should wait before reconnecting (``retry:`` line)."""
        return self._retry

    @property
    def comment(self) -> str | None:
        """A comment (``:`` lines), ignored by clients; ``""`` makes a bare keep-alive."""
        return self._comment

    @property
    def data_text(self) -> str | None:
        """The data as it goes on the wire (serialized once), or ``None`` for `UNSET`."""
        return self._data_text

    def encode(self) -> bytes:
        """The UTF-8 bytes of this event, ending with the blank line that dispatches it.

        Order: comment lines, ``event``, ``id``, ``retry``, then one ``data:`` line per line of
        the data. Computed once at construction; calling this is free.
        """
        return self._encoded

    def replace(self, **changes: Any) -> SseEvent:
        """A new event with some fields changed, validated (and serialized) again.

        ``event.replace(id="7")`` keeps the data, type, retry and comment of ``event``.
        """
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(
                f"SseEvent.replace() got unknown field(s) {sorted(unknown)}; "
                f"the fields are {sorted(_FIELDS)}"
            )
        return SseEvent(**{**self._fields(), **changes})

    # copy.replace() (Python 3.13+) calls this.
    __replace__ = replace

    def _fields(self) -> dict[str, Any]:
        return {
            "data": self._data,
            "event": self._event,
            "id": self._id,
            "retry": self._retry,
            "comment": self._comment,
        }

    def __eq__(self, other: object) -> bool:
        if type(other) is not SseEvent:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        # Like a frozen dataclass: hashable when the data is (a dict is not).
        return hash(tuple(self._fields().values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._fields().items())
        return f"SseEvent({fields})"

    def _text(self, data_text: str | None) -> str:
        text = ""
        if self._comment is not None:
            text = "".join(f": {line}\n" for line in _lines(self._comment))
        if self._event is not None:
            text += f"event: {self._event}\n"
        if self._id is not None:
            text += f"id: {self._id}\n"
        if self._retry is not None:
            text += f"retry: {self._retry}\n"
        if data_text is not None:
            if "\n" in data_text or "\r" in data_text:
                text += "".join(f"data: {line}\n" for line in _lines(data_text))
            else:
                text += f"data: {data_text}\n"
        elif self._event is None and self._id is None and self._retry is None:
            # Comments only: no blank line. It would dispatch nothing for the spec, but some
            # clients (httpx-sse <= 0.4.3) turn a blank line into an empty event once the
            # stream has set an id; the next event's blank line ends these lines anyway.
            return text
        return text + "\n"


def _refuse_surrogates_in_names(event: str | None, id: str | None) -> None:
    """Raise ``ValueError`` if ``event`` or ``id`` holds a surrogate code point.

    Those two name things the client matches (a listener's type, the id it resumes from), so a
    silently replaced character would break the match; ``data`` and ``comment`` are text, where
    U+FFFD is what a client decoding the invalid bytes would have shown anyway.
    """
    for name, value in (("event", event), ("id", id)):
        if value is not None and _SURROGATE.search(value) is not None:
            raise ValueError(
                f"SseEvent {name} contains a lone surrogate ({value!r}), which UTF-8 cannot "
                "encode; build it from valid text"
            )


def _check_id(value: object) -> None:
    """Refuse an id that a client could not send back unchanged as ``Last-Event-ID``.

    The id's only use is to come back in a request header, so it must survive HTTP: header
    values cannot hold control characters (h11 and browsers refuse to send them, and the
    client silently stops resuming), and HTTP trims spaces and tabs at both ends.
    """
    _check_line_field("id", value)
    assert isinstance(value, str)  # _check_line_field refused everything else but None
    if "\0" in value:
        raise ValueError(
            "SseEvent id must not contain NUL: clients silently ignore such an id; remove it"
        )
    control = _HEADER_CONTROL.search(value)
    if control is not None:
        raise ValueError(
            f"SseEvent id must not contain the control character {control.group()!r}: a client "
            f"cannot send it back in a Last-Event-ID header, so it could never resume; "
            f"got {value!r}"
        )
    if value != value.strip(_BLANKS):
        raise ValueError(
            f"SseEvent id must not start or end with a space or tab: HTTP trims them, so the "
            f"client would send back {value.strip(_BLANKS)!r} and resuming would not "
            f"find {value!r}"
        )


def _check_retry(value: object) -> None:
    if type(value) is bool or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"SseEvent retry must be a non-negative int of milliseconds, got {value!r}"
        )


def _check_line_field(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ValueError(
            f"SseEvent {name} must be a str or None, got {type(value).__name__!r}; "
            f"pass str(value) if you meant its text"
        )
    if "\r" in value or "\n" in value:
        raise ValueError(
            f"SseEvent {name} must not contain CR or LF, which would end the field early: "
            f"got {value!r}; keep it on one line (multi-line text belongs in data)"
        )


def _serialize(data: Any) -> str | None:
    if data is UNSET:
        return None
    if isinstance(data, str):
        return data
    serializer = current_serializer()
    name = getattr(serializer, "__qualname__", repr(serializer))
    try:
        result = serializer(data)
    except Exception as exc:
        hint = "; decode bytes to str to send them as text" if isinstance(data, bytes) else ""
        raise ValueError(
            f"SseEvent data of type {type(data).__name__!r} cannot be serialized to JSON "
            f"by {name}: {exc}{hint}"
        ) from exc
    if isinstance(result, bytes):
        try:
            return result.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"SseEvent data of type {type(data).__name__!r}: serializer {name} returned "
                f"bytes that are not UTF-8: {exc}"
            ) from exc
    if not isinstance(result, str):
        raise ValueError(
            f"SseEvent data of type {type(data).__name__!r}: serializer {name} must return "
            f"str or bytes, got {type(result).__name__!r}"
        )
    return result


_FIELDS: Final = frozenset({"data", "event", "id", "retry", "comment"})


def to_event(item: object) -> SseEvent:
    """Turn what a handler yields or sends into an :class:`SseEvent`.

    The rule, in order:

    1. an :class:`SseEvent` is returned as is;
    2. a ``Mapping`` whose keys are all field names of ``SseEvent`` (``data``, ``event``,
       ``id``, ``retry``, ``comment``) and include ``data`` or ``comment`` is taken as keyword
       arguments: ``{"data": {...}, "event": "update", "id": "1"}``;
    3. anything else is the ``data`` of an unnamed event: ``{"n": 2}`` sends ``{"n":2}``.

    **The one ambiguity:** a payload that happens to use only those keys, such as
    ``{"data": [1, 2]}``, follows rule 2 and sends ``[1,2]``. To send such a mapping as JSON
    data, wrap it yourself: ``SseEvent(data={"data": [1, 2]})``.
    """
    if isinstance(item, SseEvent):
        return item
    if isinstance(item, Mapping) and item.keys() <= _FIELDS and item.keys() & {"data", "comment"}:
        return SseEvent(**item)
    return SseEvent(data=item)
