"""Content negotiation on ``Accept`` (RFC 9110 12.5.1): `best_match`, pure, no I/O."""

from __future__ import annotations

import pytest

from trio_dwex.wire._headers import best_match

JSON = "application/json"
STREAM = "text/event-stream"
OFFERS = [JSON, STREAM]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        # No preference stated: the first offer, the server's own preference.
        (None, JSON),
        ("", JSON),
        ("  ", JSON),
        ("*/*", JSON),
        # One named: that one.
        (STREAM, STREAM),
        (JSON, JSON),
        ("text/*", STREAM),
        ("TEXT/Event-Stream", STREAM),
        # Qualities decide; a tie goes to the first offer.
        (f"{STREAM}, {JSON};q=0.5", STREAM),
        (f"{JSON};q=0.4, {STREAM};q=0.6", STREAM),
        (f"{STREAM};q=0.9, {JSON};q=0.9", JSON),
        # The most specific range gives an offer its quality, whatever the order.
        (f"*/*;q=1, {JSON};q=0.1", STREAM),
        (f"text/*;q=0.2, */*;q=0.5, {STREAM}", STREAM),
        # q=0 excludes; nothing acceptable is None.
        (f"{JSON};q=0, */*", STREAM),
        (f"{JSON};q=0, {STREAM};q=0", None),
        ("image/png", None),
        # What a browser's fetch() and EventSource send.
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
        (STREAM + ";charset=utf-8", STREAM),
        # Ranges that do not parse are skipped, as if not sent.
        (f"{JSON};q=abc, {STREAM}", STREAM),
        (f"{JSON};q=nan, {STREAM};q=0.1", STREAM),
        (f"{JSON};q=2, {STREAM};q=0.1", STREAM),
        ("*/json, nonsense, /, text/", None),
    ],
)
def test_best_match(accept: str | None, expected: str | None) -> None:
    assert best_match(accept, OFFERS) == expected


def test_no_offers_is_none() -> None:
    assert best_match(None, []) is None
    assert best_match("*/*", []) is None
