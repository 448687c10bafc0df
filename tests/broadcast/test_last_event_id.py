"""A client's ``Last-Event-ID`` is any text: every one is an id, or a reset, never an error.

Properties of `parse_stream_id` (the one reader of ids both backends share), then what each
backend answers to hostile ids. The number of examples comes from ``HYPOTHESIS_EXAMPLES``
(default 200), as in ``tests/wire/test_roundtrip.py``.
"""

from __future__ import annotations

import json
import os

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.broadcast.conftest import BackendFactory
from tests.broadcast.test_hub import take
from trio_dwex.broadcast import RESET_EVENT, Broadcast, MemoryBackend
from trio_dwex.broadcast._backend import MAX_ID_PART, parse_stream_id

settings.register_profile(
    "last-event-id",
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
IDS = settings.get_profile("last-event-id")

#: Parts of ids as a client may send them: short and long digit runs (past 20 digits, and past
#: Python's 4,300-digit conversion limit), zeros, and anything else.
digits = st.one_of(
    st.from_regex(r"[0-9]{0,25}", fullmatch=True),
    st.integers(0, 5000).map(lambda n: "9" * n),
    st.integers(0, 5000).map(lambda n: "0" * n + "1"),
    st.integers(MAX_ID_PART - 3, MAX_ID_PART + 3).map(str),
)
part = st.one_of(digits, st.text(max_size=30))
hostile_ids = st.one_of(
    st.text(),
    st.builds(lambda a, b: f"{a}-{b}", part, part),
    st.builds(lambda a, b, c: f"{a}-{b}-{c}", digits, digits, digits),
)


@IDS
@given(hostile_ids)
def test_any_text_is_an_id_in_range_or_none(text: str) -> None:
    key = parse_stream_id(text)
    if key is not None:
        first, second = key
        assert 0 <= first <= MAX_ID_PART
        assert 0 <= second <= MAX_ID_PART
        # Only two runs of ASCII digits, of at most 20 each, make an id.
        a, b = text.split("-")
        for digits_of_part in (a, b):
            assert digits_of_part.isascii()
            assert digits_of_part.isdigit()
            assert len(digits_of_part) <= 20
        assert (int(a), int(b)) == key


@IDS
@given(st.integers(0, MAX_ID_PART), st.integers(0, MAX_ID_PART))
def test_every_id_in_range_reads_back(first: int, second: int) -> None:
    assert parse_stream_id(f"{first}-{second}") == (first, second)


@pytest.mark.parametrize(
    "text",
    [
        f"{MAX_ID_PART + 1}-0",
        f"0-{MAX_ID_PART + 1}",
        "1" * 4301 + "-1",
        "1-" + "1" * 4301,
        "0" * 21 + "-1",
        "-1",
        "1-",
        "-",
        "",
        "1-2-3",
        "+1-1",
        " 1-1",
        "1_0-1",
        "٣-1",  # an Arabic-Indic digit: isdigit() says yes
        "²-1",
        "0x1-1",
    ],
)
def test_what_is_not_an_id(text: str) -> None:
    assert parse_stream_id(text) is None


@IDS
@given(hostile_ids)
def test_the_memory_backend_answers_any_id_with_events_or_a_reset(text: str) -> None:
    async def subscribe() -> list[str]:
        async with Broadcast(MemoryBackend()) as hub:
            ids = [await hub.publish("t", n) for n in range(3)]
            async with hub.subscribe("t", last_event_id=text) as subscription:
                await hub.publish("t", "live")
                events = await take(subscription, 1)
        if text == "":
            # No id at all, as a first connection has: live events only.
            assert [event.data for event in events] == ["live"]
        elif parse_stream_id(text) is None:
            # Not an id: a reset, whose data repeats a bounded part of what was sent.
            (reset,) = events
            assert (reset.event, reset.id) == (RESET_EVENT, ids[-1])
            assert json.loads(reset.data)["reason"] == "unknown"
            # 100 characters, each at most 12 bytes of JSON escape ("\\ud83d\\ude00").
            assert len(reset.encode()) < 200 + 100 * 12
        return [event.event or "" for event in events]

    trio.run(subscribe)


#: Every id the suite's hostile client sends a backend, past both limits of the report.
HOSTILE = [
    "9" * 4301 + "-1",
    "1-" + "9" * 4301,
    f"{MAX_ID_PART + 1}-0",
    f"0-{MAX_ID_PART + 1}",
    f"{MAX_ID_PART}-{MAX_ID_PART}",  # the largest id there is: from the future, unknown
    "0-0",
    "0" * 20 + "-" + "0" * 20,
    "garbage",
    "1-2-3",
    "\x00\x7f\xff-1",
    "z" * 8_000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda text: text[:24])
async def test_each_backend_answers_a_hostile_id_with_a_reset(
    make_backend: BackendFactory, text: str
) -> None:
    async with Broadcast(make_backend()) as hub:
        latest = [await hub.publish("t", n) for n in range(3)][-1]
        async with hub.subscribe("t", last_event_id=text) as subscription:
            await hub.publish("t", "live")
            reset, live = await take(subscription, 2)
    assert (reset.event, reset.id) == (RESET_EVENT, latest)
    assert json.loads(reset.data)["reason"] == "unknown"
    assert live.data == "live"
