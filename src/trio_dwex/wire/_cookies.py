"""Cookies, sans-IO: the ``Cookie`` request header read, ``Set-Cookie`` values written (RFC 6265).

Reading is lenient, as browsers are: a pair that does not parse is skipped, not an error, since
any site on the same domain can set cookies the app never asked for. Writing is strict: a
name or value that a browser would mangle raises ``ValueError`` where the app wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal

__all__ = ["SameSite", "parse_cookies", "set_cookie_value"]

SameSite = Literal["lax", "strict", "none"]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# cookie-octet: visible ASCII except space, '"', ',', ';' and '\' (RFC 6265 section 4.1.1).
_COOKIE_VALUE = re.compile(r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*$")
_ATTRIBUTE_VALUE = re.compile(r"^[\x20-\x3a\x3c-\x7e]*$")  # no control characters, no ';'


def parse_cookies(headers: Iterable[str]) -> dict[str, str]:
    """The cookies of a request's ``Cookie`` header lines, by name.

    HTTP/2 may split the header into several lines; they are read in order. A name sent twice
    keeps its first value (a browser sends the cookie of the most specific path first). A value
    in double quotes loses them. Pairs without ``=`` or with an empty name are skipped.
    """
    cookies: dict[str, str] = {}
    for header in headers:
        for pair in header.split(";"):
            name, equals, value = pair.partition("=")
            name = name.strip()
            if not equals or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies.setdefault(name, value)
    return cookies


def set_cookie_value(
    name: str,
    value: str = "",
    *,
    max_age: int | None = None,
    expires: datetime | None = None,
    path: str | None = "/",
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = True,
    samesite: SameSite | None = "lax",
    partitioned: bool = False,
) -> str:
    """The value of one ``Set-Cookie`` header.

    Raises:
        ValueError: a name that is not a token, a value with characters a cookie cannot carry
            (space, ``"``, ``,``, ``;``, ``\\``, controls, non-ASCII: encode such values first),
            ``SameSite=None`` without ``Secure`` (browsers reject it), a partitioned cookie
            without ``Secure``, or an attribute with ``;`` or a control character.
    """
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ValueError(f"invalid cookie name {name!r}: use letters, digits and !#$%&'*+-.^_`|~")
    if not isinstance(value, str) or not _COOKIE_VALUE.match(value):
        raise ValueError(
            f"cookie {name!r} has a value a browser cannot keep as is: {value!r}; encode it "
            "first (base64url, or urllib.parse.quote)"
        )
    parts = [f"{name}={value}"]
    if max_age is not None:
        if isinstance(max_age, bool) or not isinstance(max_age, int):
            raise ValueError(f"cookie {name!r}: max_age must be an int of seconds, got {max_age!r}")
        parts.append(f"Max-Age={max_age}")
    if expires is not None:
        if expires.tzinfo is None:
            raise ValueError(f"cookie {name!r}: expires must be an aware datetime (with tzinfo)")
        parts.append(f"Expires={format_datetime(expires.astimezone(UTC), usegmt=True)}")
    for attribute, text in (("Domain", domain), ("Path", path)):
        if text is not None:
            if not _ATTRIBUTE_VALUE.match(text):
                raise ValueError(f"cookie {name!r}: {attribute} {text!r} has ';' or a control")
            parts.append(f"{attribute}={text}")
    if samesite is not None:
        if samesite not in ("lax", "strict", "none"):
            raise ValueError(f"cookie {name!r}: samesite must be 'lax', 'strict' or 'none'")
        if samesite == "none" and not secure:
            raise ValueError(f"cookie {name!r}: SameSite=None needs secure=True (browsers say so)")
        parts.append(f"SameSite={samesite.capitalize()}")
    if partitioned and not secure:
        raise ValueError(f"cookie {name!r}: a partitioned cookie needs secure=True")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if partitioned:
        parts.append("Partitioned")
    return "; ".join(parts)
