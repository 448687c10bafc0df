"""Typed events: what a stream route declares it sends, and the check that it does.

``@Sse("updates", events={"connected": Connected, "update": Update})`` declares a stream as a
union of named events, each with the type of its ``data``. The declaration is compiled once,
with the route, into an :class:`EventContract`: the OpenAPI document describes the stream
from it, and the app (unless ``Settings(check_events=False)``) wraps the route's source in
:meth:`EventContract.checked`, so an event that breaks the contract raises
:class:`EventContractError` where the stream reads it, naming the route, the event and the
field.

The name ``"message"`` declares the unnamed events (``SseEvent(data=...)`` without
``event=``), which an ``EventSource`` delivers to ``onmessage``. Comment-only events and
events without data are not checked: a client never dispatches them.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NoReturn

from .._errors import ConfigurationError
from .._unset import UNSET
from ..streams._iterators import aclose_iterator
from ..wire._sse import SseEvent, to_event
from ._convert import ConversionError, UnsupportedType, type_name
from ._schema import Check, value_checker

__all__ = [
    "MESSAGE",
    "EventContract",
    "EventContractError",
    "TextAndJson",
    "compile_events",
    "text_and_json",
]

#: The event name of unnamed events, as an ``EventSource`` dispatches them.
MESSAGE: Final = "message"


@dataclass(frozen=True)
class TextAndJson:
    """An event type that mixes text sent as is with JSON: ``Chunk | Literal["[DONE]"]``.

    A union whose members include ``str`` or ``Literal``\\ s of strings *and* other types
    describes data that is either one of those texts, on the wire as is (OpenAI's
    ``data: [DONE]``), or JSON of the other members.
    """

    #: The texts allowed as is; ``None``: any text (the union had ``str``).
    texts: frozenset[str] | None
    #: The union of the other members: the type of the JSON data.
    json_type: object

    def allows_text(self, text: str) -> bool:
        return self.texts is None or text in self.texts


def text_and_json(tp: object) -> TextAndJson | None:
    """``tp`` split into its text and its JSON members, if it is a union of both; else None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    texts: set[str] = set()
    any_text = False
    others: list[object] = []
    for member in typing.get_args(tp):
        values = typing.get_args(member) if typing.get_origin(member) is typing.Literal else ()
        if member is str:
            any_text = True
        elif values and all(isinstance(value, str) for value in values):
            texts.update(values)
        else:
            others.append(member)
    if not (any_text or texts) or not others:
        return None
    json_type = others[0] if len(others) == 1 else typing.Union[tuple(others)]  # noqa: UP007
    return TextAndJson(None if any_text else frozenset(texts), json_type)


class EventContractError(TypeError):
    """A stream sent an event its ``@Sse(events=...)`` does not allow.

    Raised where the route's stream reads the event: before the response started it is a
    500 (the handler's bug, not the client's), after that it ends the stream and is logged
    with its traceback, like any error of a stream.
    """


class EventContract:
    """A stream route's declared events, compiled: types by event name, and their checks.

    Attributes:
        route: ``Controller.method (GET /path)``, for messages.
        types: the declared ``data`` type of each event name, in declaration order.
        checks: the check of each event name's data.
    """

    __slots__ = ("_last_passed", "_mixed", "checks", "route", "types")

    def __init__(self, route: str, types: Mapping[str, object], checks: Mapping[str, Check]):
        self.route = route
        self.types = MappingProxyType(dict(types))
        self.checks = MappingProxyType(dict(checks))
        # Events whose type mixes text sent as is with JSON (see `TextAndJson`).
        self._mixed = {
            name: mixed for name, tp in types.items() if (mixed := text_and_json(tp)) is not None
        }
        # The event that passed last. An event is immutable and often one object sent to
        # every stream of the route (a broadcast): it is checked once, not once per stream.
        self._last_passed: SseEvent | None = None

    def check(self, event: SseEvent) -> None:
        """Raise :class:`EventContractError` unless ``event`` is one the route declared."""
        if event is self._last_passed:
            return
        data = event.data
        if data is UNSET:
            return  # nothing a client dispatches: a comment, or an id/retry alone
        name = event.event
        # An empty name is dispatched as "message" too.
        key = name or MESSAGE
        check = self.checks.get(key)
        if check is None:
            self._undeclared(name)
        if type(data) is str and self.types[key] is not str:
            mixed = self._mixed.get(key)
            if mixed is not None and mixed.allows_text(data):
                self._last_passed = event
                return  # one of the texts sent as is, such as "[DONE]"
            # Text sent as is: a client parses it as the JSON it claims to be.
            data = self._parse(key, data)
        try:
            check(data, "")
        except ConversionError as exc:
            where = f"data field {exc.field!r}" if exc.field else "data"
            raise EventContractError(f"{self.route}: event {key!r} {where} {exc.problem}") from None
        self._last_passed = event

    def checked(self, source: AsyncIterable[object]) -> AsyncIterator[SseEvent]:
        """``source``'s items as events, each checked when it is read (see `check`)."""
        iterator = aiter(source)
        if hasattr(iterator, "athrow"):
            return _CheckedGenerator(iterator, self)
        return _CheckedIterator(iterator, self)

    def _undeclared(self, name: str | None) -> NoReturn:
        declared = ", ".join(repr(key) for key in self.types)
        fix = (
            f"name it (event=...) or declare {MESSAGE!r}"
            if not name
            else f"declare it in @Sse(events={{{name!r}: ...}})"
        )
        raise EventContractError(
            f"{self.route} sent {self._shown(name)}, which its @Sse(events=...) does not "
            f"declare (declared: {declared}); {fix}"
        )

    def _parse(self, key: str, text: str) -> object:
        try:
            return json.loads(text)
        except ValueError:
            raise EventContractError(
                f"{self.route}: event {key!r} data is text that is not JSON, but the event "
                f"is declared as {_type_label(self.types[key])}"
            ) from None

    @staticmethod
    def _shown(name: str | None) -> str:
        return "an unnamed event ('message')" if not name else repr(name)


def _type_label(tp: object) -> str:
    return type_name(tp)


def compile_events(events: Mapping[str, object], route: str) -> EventContract:
    """Build the contract of a route's ``@Sse(events=...)``.

    Raises:
        ConfigurationError: an event's type cannot be described or checked; the message
            names the route and the event.
    """
    checks: dict[str, Check] = {}
    for name, tp in events.items():
        mixed = text_and_json(tp)
        try:
            checks[name] = value_checker(tp if mixed is None else mixed.json_type)
        except UnsupportedType as exc:
            raise ConfigurationError(f"{route}: event {name!r}: {exc}") from None
    return EventContract(route, events, checks)


class _CheckedIterator:
    """An async iterator over checked events; closing it closes the source's iterator."""

    __slots__ = ("_closing", "_contract", "_iterator", "_next")

    def __init__(self, iterator: AsyncIterator[Any], contract: EventContract) -> None:
        self._iterator = iterator
        self._next = iterator.__anext__
        self._contract = contract
        self._closing = False

    def __aiter__(self) -> AsyncIterator[SseEvent]:
        return self

    async def __anext__(self) -> SseEvent:
        item = await self._next()
        event = item if type(item) is SseEvent else to_event(item)
        if not self._closing:
            self._contract.check(event)
        return event

    async def aclose(self) -> None:
        """Close the source's iterator now (its ``finally`` runs, even if it yields)."""
        await aclose_iterator(self._iterator)


class _CheckedGenerator(_CheckedIterator):
    """The same over an async generator, which the runner finishes with ``athrow``."""

    __slots__ = ()

    async def athrow(self, error: BaseException) -> Any:
        """Throw ``error`` into the source at its ``yield``, as ``aclose()`` does."""
        # What a closing generator still yields is discarded, so it is not checked.
        self._closing = True
        return await self._iterator.athrow(error)  # type: ignore[attr-defined]
