"""SseDecoder against the WHATWG "event stream interpretation" rules, one rule per test."""

from __future__ import annotations

import json

import pytest

from trio_dwex.wire import Comment, MessageEvent, SseDecoder


def decode(*chunks: bytes) -> list[MessageEvent]:
    decoder = SseDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def datas(*chunks: bytes) -> list[str]:
    return [event.data for event in decode(*chunks)]


def test_whatwg_example_stream() -> None:
    assert decode(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [MessageEvent(data="YHOO\n+2\n10")]


def test_whatwg_example_with_ids_and_comments() -> None:
    stream = (
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n\n"
    )
    events = decode(stream)
    assert [(e.data, e.id) for e in events] == [
        ("first event", "1"),
        ("second event", ""),
        (" third event", ""),
    ]


def test_whatwg_example_empty_data_lines() -> None:
    # "data\n\ndata\ndata\n\ndata:" -> "", "\n", and the last is discarded at EOF.
    assert datas(b"data\n\ndata\ndata\n\ndata:") == ["", "\n"]


def test_blank_line_dispatches() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [MessageEvent(data="a")]


def test_default_type_is_message_and_event_sets_it() -> None:
    events = decode(b"data: a\n\nevent: ping\ndata: b\n\ndata: c\n\n")
    assert [e.type for e in events] == ["message", "ping", "message"]


def test_empty_event_field_means_message() -> None:
    assert decode(b"event:\ndata: a\n\n")[0].type == "message"


def test_multi_line_data_joined_with_lf() -> None:
    assert datas(b"data: a\ndata:\ndata: b\n\n") == ["a\n\nb"]


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_line_ends_cr_lf_crlf(end: bytes) -> None:
    stream = b"data: a" + end + b"data: b" + end + end + b"data: c" + end + end
    assert datas(stream) == ["a\nb", "c"]


def test_cr_cr_is_two_line_ends() -> None:
    assert datas(b"data: a\r\rdata: b\r\r") == ["a", "b"]


def test_crlf_split_across_chunks_counts_once() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    # If the LF were counted as a second line end, this would dispatch "a" here.
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r\n") == [MessageEvent(data="a\nb")]


def test_cr_at_chunk_end_is_a_line_end_by_itself() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [MessageEvent(data="a")]


def test_cr_then_empty_chunk_then_lf_still_counts_once() -> None:
    decoder = SseDecoder()
    decoder.feed(b"data: a\r")
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [MessageEvent(data="a")]


def test_line_split_across_many_chunks() -> None:
    stream = b"event: long\ndata: " + b"x" * 1000 + b"\n\n"
    assert decode(*(stream[i : i + 7] for i in range(0, len(stream), 7))) == [
        MessageEvent(type="long", data="x" * 1000)
    ]


def test_bom_is_stripped_once_at_stream_start() -> None:
    assert datas(b"\xef\xbb\xbfdata: a\n\n") == ["a"]
    # Split BOM bytes across chunks.
    assert datas(b"\xef", b"\xbb", b"\xbfdata: a\n\n") == ["a"]
    # A second BOM is not stripped: the line is then a field named "\ufeffdata", ignored.
    assert datas(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n") == []


def test_bom_later_in_stream_is_kept() -> None:
    assert datas(b"data: \xef\xbb\xbfa\n\n") == ["\ufeffa"]


def test_line_without_colon_is_field_with_empty_value() -> None:
    assert datas(b"data\n\n") == [""]
    events = decode(b"id: 5\ndata: a\n\nid\ndata: b\n\n")
    assert [e.id for e in events] == ["5", ""]


def test_only_one_leading_space_is_stripped() -> None:
    assert datas(b"data:  two\n\n") == [" two"]
    assert datas(b"data:no space\n\n") == ["no space"]
    assert datas(b"data:\tTab\n\n") == ["\tTab"]


def test_value_is_split_on_first_colon_only() -> None:
    assert datas(b"data: a: b:c\n\n") == ["a: b:c"]


def test_comments_are_ignored_by_default() -> None:
    assert decode(b": hello\ndata: a\n: bye\n\n") == [MessageEvent(data="a")]


def test_comments_collected_when_asked() -> None:
    decoder = SseDecoder(comments=True)
    items = decoder.feed(b": keep-alive\n:\n:  two\ndata: a\n\n")
    assert items == [Comment("keep-alive"), Comment(""), Comment(" two"), MessageEvent(data="a")]


def test_comment_alone_dispatches_nothing() -> None:
    assert decode(b": keep-alive\n\n") == []


def test_unknown_fields_are_ignored() -> None:
    assert decode(b"foo: bar\nData: x\ndata: a\n\n") == [MessageEvent(data="a")]


def test_retry_sets_reconnection_time_only_if_all_ascii_digits() -> None:
    decoder = SseDecoder()
    assert decoder.retry is None
    decoder.feed(b"retry: 1500\n")
    assert decoder.retry == 1500
    for bad in [b"retry: -1\n", b"retry: 1.5\n", b"retry: 10ms\n", b"retry:\n", b"retry: 1 \n"]:
        decoder.feed(bad)
        assert decoder.retry == 1500, bad
    # Non-ASCII digits (here ARABIC-INDIC and superscript) are not digits to the spec.
    decoder.feed("retry: ١٢\nretry: ²\n".encode())
    assert decoder.retry == 1500
    decoder.feed(b"retry: 0\ndata: a\n\n")
    assert decoder.retry == 0


def test_retry_takes_effect_without_dispatch_and_is_reported_on_events() -> None:
    decoder = SseDecoder()
    decoder.feed(b"retry: 10\n")
    assert decoder.retry == 10
    assert decoder.feed(b"data: a\n\n") == [MessageEvent(data="a", retry=10)]


def test_absurdly_long_retry_is_ignored_not_raised() -> None:
    decoder = SseDecoder()
    decoder.feed(b"retry: " + b"9" * 10_000 + b"\n")
    assert decoder.retry is None


def test_id_with_nul_is_ignored() -> None:
    events = decode(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]


def test_last_event_id_set_on_dispatch_and_kept_across_events() -> None:
    decoder = SseDecoder()
    assert decoder.last_event_id == ""
    decoder.feed(b"id: 7\ndata: a\n")
    assert decoder.last_event_id == ""  # the buffer is copied only when the event dispatches
    assert decoder.feed(b"\ndata: b\n\n") == [
        MessageEvent(data="a", id="7"),
        MessageEvent(data="b", id="7"),
    ]
    assert decoder.last_event_id == "7"


def test_empty_id_resets_last_event_id() -> None:
    events = decode(b"id: 7\ndata: a\n\nid:\ndata: b\n\n")
    assert [e.id for e in events] == ["7", ""]


def test_event_without_data_is_not_dispatched_but_id_applies() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"event: x\nid: 3\n\n") == []
    assert decoder.last_event_id == "3"
    # The event type was reset too: the next event is a plain message.
    assert decoder.feed(b"data: a\n\n") == [MessageEvent(data="a", id="3")]


def test_incomplete_event_at_eof_is_discarded() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\nid: 9\n") == [MessageEvent(data="a")]
    assert decoder.close() == []
    assert decoder.last_event_id == ""


def test_unterminated_line_at_eof_is_discarded() -> None:
    assert datas(b"data: a\n\ndata: b") == ["a"]
    assert datas(b"data: a\n") == []


def test_close_resets_stream_state_but_keeps_last_id_and_retry() -> None:
    decoder = SseDecoder()
    decoder.feed(b"retry: 50\nid: 4\ndata: a\n\nevent: x\ndata: half")
    assert decoder.close() == []
    assert (decoder.last_event_id, decoder.retry) == ("4", 50)
    # A new connection: BOM accepted again, no leftovers of the half line or the event type,
    # and (per spec) the new stream's id buffer starts empty.
    assert decoder.feed(b"\xef\xbb\xbfdata: b\n\n") == [MessageEvent(data="b", id="", retry=50)]


def test_invalid_utf8_is_replaced() -> None:
    assert datas(b"data: a\xffb\xc3\n\n") == ["a\ufffdb\ufffd"]


def test_utf8_sequence_split_across_chunks() -> None:
    snowman = "☃".encode()
    assert datas(b"data: " + snowman[:1], snowman[1:2], snowman[2:] + b"\n\n") == ["☃"]


def test_nul_and_other_characters_in_data_are_kept() -> None:
    assert datas(b"data: a\x00b\x0bc\xe2\x80\xa8d\n\n") == ["a\x00b\x0bc\u2028d"]


def test_message_event_json() -> None:
    (event,) = decode(b'data: {"a": [1, 2]}\n\n')
    assert event.json() == {"a": [1, 2]}
    with pytest.raises(json.JSONDecodeError):
        MessageEvent(data="not json").json()


def test_message_event_defaults() -> None:
    event = MessageEvent(data="x")
    assert (event.type, event.id, event.retry) == ("message", "", None)
