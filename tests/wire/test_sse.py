"""SseEvent: exact bytes, validation at construction, the serializer context, to_event."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

import pytest

from trio_dwex import UNSET, wire
from trio_dwex.wire import (
    SseEvent,
    current_serializer,
    json_serializer,
    to_event,
    use_serializer,
)

# --- exact bytes -------------------------------------------------------------------------------


def test_all_fields_in_order() -> None:
    event = SseEvent(data="hello", event="update", id="42", retry=3000, comment="note")
    assert event.encode() == (b": note\nevent: update\nid: 42\nretry: 3000\ndata: hello\n\n")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("a\nb", b"data: a\ndata: b\n\n"),
        ("a\rb", b"data: a\ndata: b\n\n"),
        ("a\r\nb", b"data: a\ndata: b\n\n"),
        ("a\r\n\r\nb\n", b"data: a\ndata: \ndata: b\ndata: \n\n"),
    ],
)
def test_multiline_data_splits_on_cr_lf_crlf(data: str, expected: bytes) -> None:
    assert SseEvent(data=data).encode() == expected


def test_data_does_not_split_on_other_unicode_line_breaks() -> None:
    # str.splitlines() would split on these; an EventSource does not.
    text = "a\x0bb\x0cc\x1cd\x85e\u2028f\u2029g"
    assert SseEvent(data=text).encode() == f"data: {text}\n\n".encode()


def test_none_is_json_null() -> None:
    assert SseEvent(data=None).encode() == b"data: null\n\n"


def test_dict_is_compact_json() -> None:
    assert SseEvent(data={"a": 1}).encode() == b'data: {"a":1}\n\n'


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (1.5, "1.5"), (True, "true"), ([1, "x"], '[1,"x"]'), ({"é": "ü"}, '{"é":"ü"}')],
)
def test_other_values_are_json(value: object, text: str) -> None:
    event = SseEvent(data=value)
    assert event.data_text == text
    assert event.encode() == f"data: {text}\n\n".encode()


def test_str_data_is_sent_as_is_not_json_quoted() -> None:
    assert SseEvent(data='"quoted"').encode() == b'data: "quoted"\n\n'


def test_empty_string_data_is_one_empty_data_line() -> None:
    assert SseEvent(data="").encode() == b"data: \n\n"


def test_comment_only_event_is_a_keep_alive_without_a_blank_line() -> None:
    assert SseEvent(comment="keep-alive").encode() == b": keep-alive\n"
    assert SseEvent(comment="").encode() == b": \n"
    assert SseEvent(comment="a\nb").encode() == b": a\n: b\n"
    # With any other field the comment is part of an event, which the blank line ends.
    assert SseEvent(comment="c", id="1").encode() == b": c\nid: 1\n\n"


def test_multiline_comment_becomes_several_comment_lines() -> None:
    event = SseEvent(comment="one\ntwo\r\nthree\rfour", data="x")
    assert event.encode() == b": one\n: two\n: three\n: four\ndata: x\n\n"


def test_empty_id_is_encoded_to_reset_the_last_event_id() -> None:
    assert SseEvent(data="x", id="").encode() == b"id: \ndata: x\n\n"


def test_event_without_data_has_no_data_line() -> None:
    assert SseEvent(id="7").encode() == b"id: 7\n\n"
    assert SseEvent(retry=0).encode() == b"retry: 0\n\n"


def test_non_ascii_is_utf8() -> None:
    assert (
        SseEvent(data="héllo ☃", event="ünï").encode() == "event: ünï\ndata: héllo ☃\n\n".encode()
    )


def test_encode_is_cached() -> None:
    event = SseEvent(data={"a": [1, 2]})
    assert event.encode() is event.encode()


def test_data_is_serialized_at_construction() -> None:
    payload = {"n": 1}
    event = SseEvent(data=payload)
    payload["n"] = 2
    assert event.encode() == b'data: {"n":1}\n\n'


def test_event_is_immutable_and_replace_revalidates() -> None:
    event = SseEvent(data="x", id="1")
    with pytest.raises(AttributeError):
        event.id = "2"  # type: ignore[misc]
    assert event.replace(id="2").encode() == b"id: 2\ndata: x\n\n"
    assert event.replace(id="2") == SseEvent(data="x", id="2")
    assert event.id == "1"
    with pytest.raises(ValueError, match="id"):
        event.replace(id="a\nb")
    with pytest.raises(TypeError, match="unknown field"):
        event.replace(ids="2")


def test_equality_and_repr() -> None:
    assert SseEvent(data={"a": 1}, id="1") == SseEvent(data={"a": 1}, id="1")
    assert repr(SseEvent(comment="c")) == (
        "SseEvent(data=UNSET, event=None, id=None, retry=None, comment='c')"
    )


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\r\nb", "\n"])
@pytest.mark.parametrize("name", ["event", "id"])
def test_cr_or_lf_in_event_or_id_is_rejected(name: str, bad: str) -> None:
    with pytest.raises(ValueError, match=rf"SseEvent {name} must not contain CR or LF"):
        SseEvent(data="x", **{name: bad})  # type: ignore[arg-type]


def test_nul_in_id_is_rejected() -> None:
    with pytest.raises(ValueError, match="SseEvent id must not contain NUL"):
        SseEvent(data="x", id="a\0b")


def test_nul_in_event_is_allowed() -> None:
    # The spec ignores an id with NUL, so we refuse to send one; event types may contain it.
    assert SseEvent(data="x", event="a\0b").encode() == b"event: a\0b\ndata: x\n\n"


@pytest.mark.parametrize("name", ["event", "id"])
def test_non_str_event_or_id_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=rf"SseEvent {name} must be a str or None, got 'int'"):
        SseEvent(data="x", **{name: 1})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True, False])
def test_retry_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(ValueError, match="SseEvent retry must be a non-negative int"):
        SseEvent(data="x", retry=bad)  # type: ignore[arg-type]


class _Text(str):
    """A str subclass: it misses the constructor's fast path and takes the full checks."""


class _Millis(enum.IntEnum):
    THREE_SECONDS = 3000


def test_str_subclasses_and_int_subclasses_take_the_full_checks() -> None:
    event = SseEvent(data=_Text("x"), event=_Text("e"), id=_Text("1"), retry=_Millis.THREE_SECONDS)
    assert event.encode() == b"event: e\nid: 1\nretry: 3000\ndata: x\n\n"
    with pytest.raises(ValueError, match="SseEvent id must not contain NUL"):
        SseEvent(data="x", id=_Text("a\0b"))
    with pytest.raises(ValueError, match="SseEvent id must not contain CR or LF"):
        SseEvent(data="x", id=_Text("a\nb"))
    with pytest.raises(ValueError, match="SseEvent event must not contain CR or LF"):
        SseEvent(data="x", event=_Text("a\rb"))


def test_comment_must_be_a_str() -> None:
    with pytest.raises(ValueError, match="SseEvent comment must be a str, got 'int'"):
        SseEvent(comment=5)  # type: ignore[arg-type]


def test_empty_event_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty event"):
        SseEvent()
    with pytest.raises(ValueError, match="empty event"):
        SseEvent(data=UNSET)


def test_unserializable_data_names_the_field_and_type() -> None:
    with pytest.raises(
        ValueError, match=r"SseEvent data of type 'set' cannot be serialized"
    ) as info:
        SseEvent(data={1, 2})
    assert isinstance(info.value.__cause__, TypeError)


def test_nan_is_refused_because_it_is_not_json() -> None:
    with pytest.raises(ValueError, match="SseEvent data of type 'float'"):
        SseEvent(data=float("nan"))


def test_the_default_serializer_keeps_nothing_from_one_event_to_the_next() -> None:
    # Every event shares one JSON encoder: a value refused half-way (a cycle) must leave
    # nothing behind, and a list reached twice in one value is not a cycle.
    looped: list[object] = []
    looped.append(looped)
    for _ in range(2):
        with pytest.raises(ValueError, match="Circular reference detected"):
            SseEvent(data=looped)
    shared = [1]
    assert SseEvent(data={"a": shared, "b": [shared]}).encode() == (
        b'data: {"a":[1],"b":[[1]]}\n\n'
    )


def test_bytes_data_gets_a_hint() -> None:
    with pytest.raises(ValueError, match="decode bytes to str"):
        SseEvent(data=b"raw")


def test_lone_surrogate_in_an_event_or_id_names_the_field() -> None:
    # Names the client matches: a silently replaced character would break the match.
    with pytest.raises(ValueError, match="SseEvent event contains a lone surrogate"):
        SseEvent(data="x", event="up\ud800")
    with pytest.raises(ValueError, match="SseEvent id contains a lone surrogate"):
        SseEvent(data="x", id="\udfff")


def test_lone_surrogate_in_text_is_replaced_as_a_client_would_show_it() -> None:
    # json.loads('"\\ud800"') makes such a string: it must not make SseEvent raise.
    event = SseEvent(data="a\ud800b\n\udfff", comment="c\udc00")
    assert event.encode() == ": c\ufffd\ndata: a\ufffdb\ndata: \ufffd\n\n".encode()
    assert event.data_text == "a\ufffdb\n\ufffd"  # what went on the wire, for the hub
    assert event.data == "a\ud800b\n\udfff"  # as given
    assert SseEvent(data="\ud800").encode() == "data: \ufffd\n\n".encode()
    assert SseEvent(data="\ud800", id="7").encode() == "id: 7\ndata: \ufffd\n\n".encode()


def test_lone_surrogate_in_json_data_is_escaped_and_round_trips() -> None:
    value = {"k\ud800": ["\udfff", "\\\ud800", "é"]}
    event = SseEvent(data=value)
    assert event.encode() == b'data: {"k\\ud800":["\\udfff","\\\\\\ud800","\xc3\xa9"]}\n\n'
    assert json.loads(event.data_text or "") == value  # what JSON.parse gives back too
    # A serializer that leaves them in its JSON gets them escaped all the same.
    with use_serializer(lambda value: json.dumps(value, ensure_ascii=False)):
        lenient = SseEvent(data={"k": "\ud800"}, comment="\udfff")
    assert lenient.encode() == b': \xef\xbf\xbd\ndata: {"k": "\\ud800"}\n\n'
    assert lenient.data_text == '{"k": "\\ud800"}'
    # Two surrogates that make a pair are escaped as one: the character they encode.
    assert json_serializer("\ud83d\ude00") == '"\\ud83d\\ude00"'
    assert json.loads(json_serializer("\ud83d\ude00")) == "\U0001f600"


# --- the serializer in force -------------------------------------------------------------------


def test_json_serializer_is_compact_and_keeps_unicode() -> None:
    assert json_serializer({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'
    # ... except surrogates, which UTF-8 cannot carry: escaped, so the text always encodes.
    assert json_serializer(["\ud800é"]) == '["\\ud800é"]'
    assert json_serializer("\udfff").encode() == b'"\\udfff"'
    with pytest.raises(ValueError, match="JSON compliant"):
        json_serializer(float("inf"))


def test_default_serializer_is_json() -> None:
    assert current_serializer() is json_serializer


def test_use_serializer_with_bytes_serializer_is_used_at_construction_and_restored() -> None:
    calls: list[object] = []

    def orjson_like(value: Any) -> bytes:
        calls.append(value)
        return json.dumps(value, sort_keys=True, separators=(", ", ": ")).encode()

    with use_serializer(orjson_like) as active:
        assert active is orjson_like
        assert current_serializer() is orjson_like
        event = SseEvent(data={"b": 1, "a": "☃"})
    assert current_serializer() is json_serializer
    assert calls == [{"b": 1, "a": "☃"}]
    assert event.encode() == b'data: {"a": "\\u2603", "b": 1}\n\n'
    # Built with the custom serializer, the event keeps its text after the context ends.
    assert event.encode() == b'data: {"a": "\\u2603", "b": 1}\n\n'


def test_use_serializer_restores_after_an_error() -> None:
    def fail_inside() -> None:
        with use_serializer(str):
            assert current_serializer() is str
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_inside()
    assert current_serializer() is json_serializer


def test_str_data_bypasses_the_serializer() -> None:
    def refuse(value: Any) -> str:
        raise AssertionError("must not be called")

    with use_serializer(refuse):
        assert SseEvent(data="plain").encode() == b"data: plain\n\n"


def test_serializer_error_is_wrapped_and_chained() -> None:
    class EncodeError(Exception):
        pass

    def failing(value: Any) -> str:
        raise EncodeError("nope")

    with use_serializer(failing), pytest.raises(ValueError, match=r"'list'.*nope") as info:
        SseEvent(data=[1])
    assert isinstance(info.value.__cause__, EncodeError)


def test_serializer_returning_non_utf8_bytes_or_other_types_is_reported() -> None:
    with use_serializer(lambda value: b"\xff"), pytest.raises(ValueError, match="not UTF-8"):
        SseEvent(data=1)
    with (
        use_serializer(lambda value: 42),  # type: ignore[arg-type,return-value]
        pytest.raises(ValueError, match="must return str or bytes, got 'int'"),
    ):
        SseEvent(data=1)


# --- to_event ----------------------------------------------------------------------------------


def test_to_event_returns_an_event_as_is() -> None:
    event = SseEvent(data="x")
    assert to_event(event) is event


def test_to_event_mapping_of_fields_is_keyword_arguments() -> None:
    event = to_event({"data": {"n": 1}, "event": "update", "id": "1"})
    assert event == SseEvent(data={"n": 1}, event="update", id="1")
    assert event.encode() == b'event: update\nid: 1\ndata: {"n":1}\n\n'
    assert to_event({"comment": "ping"}).encode() == b": ping\n"


def test_to_event_other_mappings_are_data() -> None:
    assert to_event({"n": 2}).encode() == b'data: {"n":2}\n\n'
    # Field names, but neither data nor comment: a payload, not keyword arguments.
    assert to_event({"id": "1"}).encode() == b'data: {"id":"1"}\n\n'
    # One foreign key makes it a payload too.
    assert to_event({"data": 1, "x": 2}).encode() == b'data: {"data":1,"x":2}\n\n'


def test_to_event_scalars_are_data() -> None:
    assert to_event("hi").encode() == b"data: hi\n\n"
    assert to_event(None).encode() == b"data: null\n\n"
    assert to_event([1]).encode() == b"data: [1]\n\n"


def test_to_event_mapping_with_invalid_field_raises() -> None:
    with pytest.raises(ValueError, match="retry"):
        to_event({"data": 1, "retry": -5})


def test_public_names_are_pinned() -> None:
    assert sorted(wire.__all__) == sorted(
        [
            "Comment",
            "MessageEvent",
            "PathTemplate",
            "Serializer",
            "SseDecoder",
            "SseEvent",
            "compile_path",
            "current_serializer",
            "join_paths",
            "json_serializer",
            "to_event",
            "use_serializer",
        ]
    )
    assert all(hasattr(wire, name) for name in wire.__all__)
    assert repr(UNSET) == "UNSET"


def test_the_default_serializer_encodes_what_orjson_encodes_natively() -> None:
    import datetime
    import enum
    import uuid

    class Color(enum.Enum):
        RED = "red"

    @dataclasses.dataclass
    class Point:
        x: int
        when: datetime.date

    value = {
        "point": Point(1, datetime.date(2026, 1, 2)),
        "at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "color": Color.RED,
        "id": uuid.UUID(int=1),
    }
    assert SseEvent(data=value).encode() == (
        b'data: {"point":{"x":1,"when":"2026-01-02"},"at":"2026-01-02T03:04:05+00:00",'
        b'"color":"red","id":"00000000-0000-0000-0000-000000000001"}\n\n'
    )
