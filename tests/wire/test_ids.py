"""Event ids survive the round trip a resuming client gives them: stream → header → server.

An id is only useful if the client can send it back in ``Last-Event-ID``. `SseEvent` refuses
the ids that HTTP cannot carry unchanged, and these tests hold it to that with h11, the HTTP
parser our server and httpx use: every id `SseEvent` accepts comes back identical through a
real request head, and every id it refuses would not have.
"""

from __future__ import annotations

import re

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_dwex import SseEvent
from trio_dwex.wire._headers import decode_header_value

RFC_9110_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def through_http(value: str) -> str | None:
    """``value`` sent as a browser sends ``Last-Event-ID`` and read back as our server reads it.

    ``None`` when h11 refuses the header (on either side): the client could never resume.
    """
    client = h11.Connection(h11.CLIENT)
    server = h11.Connection(h11.SERVER)
    try:
        head = client.send(
            h11.Request(
                method="GET",
                target="/events",
                headers=[(b"Host", b"example"), (b"Last-Event-ID", value.encode())],
            )
        )
        assert head is not None
        server.receive_data(head)
        request = server.next_event()
    except h11.ProtocolError:
        return None
    assert isinstance(request, h11.Request)
    return next(decode_header_value(v) for n, v in request.headers if n == b"last-event-id")


def accepted(value: str) -> bool:
    """Whether `SseEvent` takes ``value`` as an id; the same answer on each of its paths."""
    answers = set()
    # A line of text (the quick path), JSON data, a named event (the full checks).
    for fields in ({"data": "x"}, {"data": {"x": 1}}, {"data": "x", "event": "e"}):
        try:
            SseEvent(**fields, id=value)
        except ValueError:
            answers.add(False)
        else:
            answers.add(True)
    assert len(answers) == 1, f"the paths disagree on {value!r}"
    return answers.pop()


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(exclude_categories=["Cs"])))
def test_an_id_is_accepted_exactly_when_it_comes_back_unchanged(value: str) -> None:
    # Accepted means a faithful round trip through h11. Refused means h11 would change or
    # refuse it, or it holds a control character, which RFC 9110 forbids in a header value
    # (h11 lets some through; stricter servers and proxies refuse them).
    faithful = through_http(value) == value and not RFC_9110_CONTROL.search(value)
    assert accepted(value) == faithful


@pytest.mark.parametrize(
    "value",
    ["é…-1", "日本-42", "a\tb", "", "1700000000000-0", "\u00a0x", "x\u2028y"],
)
def test_non_ascii_and_inner_tab_ids_round_trip(value: str) -> None:
    assert accepted(value)
    assert through_http(value) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (" 1", "start or end with a space or tab"),
        ("1\t", "start or end with a space or tab"),
        ("a\x0bb", "control character '\\x0b'"),
        ("a\x0cb", "control character '\\x0c'"),
        ("\x7f", "control character '\\x7f'"),
        ("a\x01", "control character '\\x01'"),
    ],
)
def test_an_id_http_would_change_or_refuse_is_refused_with_the_reason(
    value: str, reason: str
) -> None:
    with pytest.raises(ValueError, match="SseEvent id must not") as caught:
        SseEvent(data="x", id=value)
    assert reason in str(caught.value)
    assert through_http(value) != value or RFC_9110_CONTROL.search(value)


def test_header_values_are_read_as_utf8_and_fall_back_to_latin1() -> None:
    assert decode_header_value("é…-1".encode()) == "é…-1"
    assert decode_header_value(b"\xe9-1") == "é-1"  # not UTF-8: an old client's latin-1
    assert decode_header_value(b"plain") == "plain"
