"""Headers: response headers checked and encoded once, so a bad one fails where it was
written; and the request's ``Accept`` header, read for content negotiation."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

__all__ = [
    "HeadersInput",
    "accepts_coding",
    "best_match",
    "decode_header_value",
    "encode_headers",
]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")


HeadersInput = Mapping[str, str] | Iterable[tuple[str, str]]
"""Response headers as given: a mapping, or ``(name, value)`` pairs where a name may repeat
(two ``Set-Cookie`` headers)."""


def encode_headers(headers: HeadersInput | None) -> list[tuple[bytes, bytes]]:
    """Check and encode response headers; a bad one raises ``ValueError`` naming it.

    A CR or LF in a value would let it forge other headers (response splitting), so it is
    refused here rather than left to the server.
    """
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        pairs: Iterable[object] = headers.items()
    elif isinstance(headers, str | bytes) or not isinstance(headers, Iterable):
        raise ValueError(
            f"response headers must be a mapping or (name, value) pairs, got {headers!r}"
        )
    else:
        pairs = headers
    encoded: list[tuple[bytes, bytes]] = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"a response header must be a (name, value) pair, got {pair!r}")
        name, value = pair
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"invalid response header name {name!r}: use letters, digits and -")
        if not isinstance(value, str):
            raise ValueError(f"response header {name!r} must be a str, got {type(value).__name__}")
        if _BAD_VALUE.search(value):
            raise ValueError(f"response header {name!r} contains CR, LF or NUL: {value!r}")
        try:
            encoded.append((name.lower().encode("ascii"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise ValueError(
                f"response header {name!r} has characters outside latin-1: {value!r}; "
                "percent-encode it"
            ) from None
    return encoded


def decode_header_value(raw: bytes) -> str:
    """A request header's value as text: UTF-8 when it is valid UTF-8, else latin-1.

    Browsers send non-ASCII header values as UTF-8 bytes, the ``Last-Event-ID`` of an event
    whose id was ``"é-1"`` among them, so reading them as latin-1 (the ASGI default) would
    hand the handler ``"Ã©-1"`` and resuming would find nothing. Bytes that are not UTF-8
    can only come from an older client, and latin-1 reads any byte, so nothing is refused.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def best_match(accept: str | None, offers: Iterable[str]) -> str | None:
    """The media type of ``offers`` that an ``Accept`` header value prefers (RFC 9110 12.5.1).

    Each offer takes the quality (``q``) of the most specific range that matches it: the exact
    type, then ``type/*``, then ``*/*``. The offer of the highest quality wins, the first
    listed on a tie (the server's preference), and ``None`` when the header excludes every
    offer (no range matches, or ``q=0``). A missing or blank header accepts anything, so the
    first offer wins. Ranges that do not parse are skipped, as if not sent::

        >>> best_match("text/event-stream, application/json;q=0.5",
        ...            ["application/json", "text/event-stream"])
        'text/event-stream'
    """
    choices = list(offers)
    if accept is None or not accept.strip():
        return choices[0] if choices else None
    ranges = _accept_ranges(accept)
    best: str | None = None
    best_quality = 0.0
    for offer in choices:
        kind, _, subtype = offer.partition(";")[0].strip().lower().partition("/")
        quality = None
        for specificity in ((kind, subtype), (kind, "*"), ("*", "*")):
            quality = ranges.get(specificity)
            if quality is not None:
                break
        if quality is not None and quality > best_quality:
            best, best_quality = offer, quality
    return best


def accepts_coding(accept_encoding: str | None, coding: str) -> bool:
    """Whether an ``Accept-Encoding`` value takes ``coding`` (RFC 9110 12.5.3).

    The coding's own quality counts, else that of ``*``; ``q=0`` refuses. No header means the
    client said nothing, and nothing is compressed for it (the safe reading for a stream).
    """
    if accept_encoding is None:
        return False
    qualities: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, *parameters = item.split(";")
        name = name.strip().lower()
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if name:
            qualities.setdefault(name, quality)
    quality = qualities.get(coding, qualities.get("*", 0.0))
    return 0.0 < quality <= 1.0


def _accept_ranges(accept: str) -> dict[tuple[str, str], float]:
    """``(type, subtype)`` to quality for each range of an ``Accept`` value; the first wins."""
    ranges: dict[tuple[str, str], float] = {}
    for item in accept.split(","):
        media_range, *parameters = item.split(";")
        kind, slash, subtype = media_range.strip().lower().partition("/")
        if not slash or not _TOKEN.match(kind) or not _TOKEN.match(subtype):
            continue
        if kind == "*" and subtype != "*":
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = -1.0
                break
        if not 0.0 <= quality <= 1.0:
            continue  # "q=abc", "q=nan" or "q=2": not a quality, so not a range we can weigh
        ranges.setdefault((kind, subtype), quality)
    return ranges
