"""Response headers: checked and encoded once, so a bad one fails where it was written."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["encode_headers"]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")


def encode_headers(headers: Mapping[str, str] | None) -> list[tuple[bytes, bytes]]:
    """Check and encode response headers; a bad one raises ``ValueError`` naming it.

    A CR or LF in a value would let it forge other headers (response splitting), so it is
    refused here rather than left to the server.
    """
    if headers is not None and not isinstance(headers, Mapping):
        raise ValueError(f"response headers must be a mapping of str to str, got {headers!r}")
    encoded: list[tuple[bytes, bytes]] = []
    for name, value in (headers or {}).items():
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
