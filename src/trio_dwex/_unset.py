"""`UNSET`: trio-dwex's one value for "not given", where ``None`` already means something.

This module imports nothing, so every layer can use it (import-linter keeps it at the bottom).
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["UNSET", "Unset"]


class Unset(enum.Enum):
    """The type of `UNSET`, and its only value.

    An enum with one member rather than a bare ``object()``, so that a type checker can
    follow it: ``keepalive: float | None | Unset = UNSET`` narrows to ``float | None`` after
    ``if keepalive is not UNSET``, with no ``Any`` anywhere. It is also a true singleton,
    through ``copy``, ``deepcopy`` and ``pickle``.
    """

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET
"""A value for "not given", where ``None`` is a meaningful value and so cannot say it.

- ``SseEvent(data=UNSET)``, the default, sends no ``data:`` line at all, while
  ``data=None`` is sent as ``null``.
- ``@Sse(keepalive=UNSET)``, the default, takes the app's setting, while ``keepalive=None``
  turns keep-alive comments off; the same holds for the other stream options, there and on
  ``EventSourceResponse``.
- A handler parameter without a default is planned with ``default=UNSET``, since ``= None``
  is a default like any other.
"""
