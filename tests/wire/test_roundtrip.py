"""Properties: what SseEvent encodes, SseDecoder reads back, in every chunking; and the decoder
never raises on arbitrary bytes.

The number of examples comes from the ``HYPOTHESIS_EXAMPLES`` environment variable (default 200)
so that a fuzzing session (``HYPOTHESIS_EXAMPLES=100000 pytest tests/wire``) reuses these tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_dwex import UNSET
from trio_dwex.wire import Comment, MessageEvent, SseDecoder, SseEvent

settings.register_profile(
    "wire",
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
WIRE = settings.get_profile("wire")

# Any character that can be UTF-8 encoded (no lone surrogates), with line ends made frequent.
_char = st.characters(exclude_categories=["Cs"])
_line_end = st.sampled_from(["\r", "\n", "\r\n"])
multiline_text = st.lists(st.one_of(_char, _line_end, _char)).map("".join)
one_line = st.text(_char.filter(lambda c: c not in "\r\n"))
# An id a client can send back as Last-Event-ID: no control character but TAB, and no space
# or tab at either end (SseEvent refuses the others; tests/wire/test_ids.py).
resumable_ids = st.text(
    st.characters(exclude_categories=["Cs", "Cc"]) | st.sampled_from(["\t", " "])
).filter(lambda s: s == s.strip(" \t"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | multiline_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(multiline_text, children, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def sse_events(draw: st.DrawFn) -> SseEvent:
    data = draw(st.one_of(st.just(UNSET), multiline_text, json_values))
    event = draw(st.none() | one_line)
    id_ = draw(st.none() | resumable_ids)
    retry = draw(st.none() | st.integers(min_value=0, max_value=2**40))
    comment = draw(st.none() | multiline_text)
    if data is UNSET and all(field is None for field in (event, id_, retry, comment)):
        comment = ""  # the one combination SseEvent refuses: make it a keep-alive
    return SseEvent(data=data, event=event, id=id_, retry=retry, comment=comment)


def normalise(text: str) -> str:
    return re.sub(r"\r\n|\r", "\n", text)


def expected_messages(events: list[SseEvent]) -> list[MessageEvent]:
    """What an EventSource dispatches for these events, modelled directly from the fields."""
    out: list[MessageEvent] = []
    last_id, retry = "", None
    for event in events:
        if event.id is not None:
            last_id = event.id
        if event.retry is not None:
            retry = event.retry
        if event.data is UNSET:
            continue  # no data line: per WHATWG nothing is dispatched (id and retry still apply)
        assert event.data_text is not None
        out.append(
            MessageEvent(
                type=event.event or "message",
                data=normalise(event.data_text),
                id=last_id,
                retry=retry,
            )
        )
    return out


def chunked(blob: bytes, cuts: list[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield blob[start:cut]
        start = cut
    yield blob[start:]


def decode_chunks(chunks: Iterator[bytes] | list[bytes], **kwargs: Any) -> list[Any]:
    decoder = SseDecoder(**kwargs)
    items = [item for chunk in chunks for item in decoder.feed(chunk)]
    return items + decoder.close()


@WIRE
@given(event=sse_events())
def test_one_event_roundtrips_byte_by_byte(event: SseEvent) -> None:
    blob = event.encode()
    decoder = SseDecoder()
    messages = [m for i in range(len(blob)) for m in decoder.feed(blob[i : i + 1])]
    if event.data is UNSET:
        assert messages == []  # an event with no data line is not dispatched, by the spec
    else:
        (message,) = messages
        assert message.type == (event.event or "message")
        assert message.data == normalise(event.data_text or "")
        assert message.id == (event.id or "")
        assert message.retry == event.retry
        if not isinstance(event.data, str):
            assert message.json() == event.data
    assert decoder.last_event_id == (event.id or "")
    assert decoder.retry == event.retry


def built(**fields: Any) -> bytes | str:
    """The event's bytes, or the message of the ``ValueError`` that refused it."""
    try:
        return SseEvent(**fields).encode()
    except ValueError as refused:
        return str(refused)


@WIRE
@given(data=st.one_of(multiline_text, st.text()), id_=st.none() | resumable_ids | st.text())
def test_the_quick_path_writes_what_the_full_builder_writes(data: str, id_: str | None) -> None:
    # Text data with at most an id takes SseEvent's quick path; naming the event sends the same
    # fields through the full checks and builder, which put the event line first.
    plain = built(data=data, id=id_)
    named = built(data=data, id=id_, event="e")
    if isinstance(plain, str):
        assert named == plain  # refused, for the same reason
    else:
        assert named == b"event: e\n" + plain


@WIRE
@given(events=st.lists(sse_events(), min_size=1, max_size=5), data=st.data())
def test_stream_roundtrips_in_any_chunking(events: list[SseEvent], data: st.DataObject) -> None:
    blob = b"".join(event.encode() for event in events)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=20))
    assert decode_chunks(chunked(blob, cuts)) == expected_messages(events)


@WIRE
@given(event=sse_events(), data=st.data())
def test_comments_roundtrip(event: SseEvent, data: st.DataObject) -> None:
    blob = event.encode()
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=10))
    items = decode_chunks(chunked(blob, cuts), comments=True)
    comments = [item.text for item in items if isinstance(item, Comment)]
    if event.comment is None:
        assert comments == []
    else:
        assert comments == normalise(event.comment).split("\n")


# Arbitrary bytes, salted with the fragments that drive the decoder's branches.
_fragments = st.sampled_from(
    [
        *(b"data:", b"data: x", b"id: 1", b"id:\x00", b"event: e", b"retry: 12", b"retry: x"),
        *(b":", b" ", b"\r", b"\n", b"\r\n", b"\x00"),
        *(b"\xef\xbb\xbf", b"\xef\xbb", b"\xff", b"\xe2\x98", b"\x83"),  # BOM, broken UTF-8
    ]
)
arbitrary_streams = st.lists(st.binary(max_size=20) | _fragments, max_size=30).map(b"".join)


@WIRE
@given(blob=arbitrary_streams, data=st.data())
def test_decoder_never_raises_and_ignores_chunking(blob: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=20))
    whole = decode_chunks([blob], comments=True)
    assert decode_chunks(chunked(blob, cuts), comments=True) == whole
    assert decode_chunks([blob[i : i + 1] for i in range(len(blob))], comments=True) == whole
    for item in whole:
        assert isinstance(item, MessageEvent | Comment)
