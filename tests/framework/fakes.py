"""A request implementing ``RequestLike`` for the framework tests; no sockets.

A module of its own (not ``conftest``) so test modules can import the types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class FakeRequest:
    """The least a request must offer the framework layer (see ``RequestLike``)."""

    path_params: Mapping[str, str] = field(default_factory=dict)
    query_params: Sequence[tuple[str, str]] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    raw_body: bytes = b""
    body_reads: int = 0

    async def body(self) -> bytes:
        self.body_reads += 1
        return self.raw_body


MakeRequest = Callable[..., FakeRequest]
