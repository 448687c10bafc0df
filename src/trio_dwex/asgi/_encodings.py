"""The codings a compressed stream can use: gzip, and brotli when the package is installed.

Both are flushed after every write, so that each event reaches the client at once, whole: a
stream compressed by blocks would hold events back until a block fills.
"""

from __future__ import annotations

import zlib
from typing import Any, Protocol

from ..wire._headers import accepts_coding

__all__ = ["BROTLI_QUALITY", "StreamEncoder", "choose_encoder"]

# Optional: pip install trio-dwex[brotli].
try:
    import brotli as _brotli  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _brotli = None

#: Brotli's quality for streams: 5 compresses these small, repetitive events nearly as well
#: as 11 at a fraction of its CPU (``python -m bench.compression``).
BROTLI_QUALITY = 5


class StreamEncoder(Protocol):
    """One stream's compressor: its ``Content-Encoding`` and its two steps."""

    #: The ``Content-Encoding`` value.
    name: bytes

    def encode(self, data: bytes) -> bytes:
        """``data`` compressed and flushed: everything needed to decode it now."""
        ...

    def finish(self) -> bytes:
        """The end of the compressed stream."""
        ...


class _Gzip:
    name = b"gzip"

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush(zlib.Z_FINISH)


class _Brotli:
    name = b"br"

    def __init__(self) -> None:
        assert _brotli is not None
        self._compressor: Any = _brotli.Compressor(mode=_brotli.MODE_TEXT, quality=BROTLI_QUALITY)

    def encode(self, data: bytes) -> bytes:
        return bytes(self._compressor.process(data) + self._compressor.flush())

    def finish(self) -> bytes:
        return bytes(self._compressor.finish())


def choose_encoder(
    accept_encoding: str | None, *, prefer_brotli: bool = False
) -> StreamEncoder | None:
    """The encoder for a client's ``Accept-Encoding``: with ``prefer_brotli``, brotli if the
    client takes it and the package is installed; else gzip if the client takes that; ``None``
    for a client that asked for neither."""
    if prefer_brotli and _brotli is not None and accepts_coding(accept_encoding, "br"):
        return _Brotli()
    if accepts_coding(accept_encoding, "gzip"):
        return _Gzip()
    return None
