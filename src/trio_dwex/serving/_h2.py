"""Our HTTP/2 protocol: Hypercorn's, made safe against frames for streams it has forgotten.

**The crash.** Hypercorn 0.18's ``H2Protocol`` forgets a stream (``self.streams``) as soon as its
response has ended. HTTP/2 lets the client keep sending on it: a stream whose response ended is
only half closed, so a client may still send its request body, for instance after the server
answered early with a 401 or 413 without reading it. ``H2Protocol._handle_events`` then looks
the stream up with ``self.streams[stream_id]`` and raises ``KeyError``, which nothing catches:
it ends the connection's task and, through the server's nursery, the whole server, every other
client with it. One request, no special privilege.

**The fix.** `DwexH2Protocol` keeps its streams in `_StreamTable`, a ``dict`` whose lookup of a
missing stream gives `_FORGOTTEN`, a stream that drops whatever it is handed. Hypercorn then
goes on as for a known stream: the data is acknowledged (so the connection's flow-control
window is not eaten by bytes nobody reads) and discarded. Membership tests (``in``), iteration
and removal are plain ``dict`` ones, so nothing else in upstream's code changes meaning.
"""

from __future__ import annotations

from typing import Any

from hypercorn.events import Event
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.ws_stream import WSStream

__all__ = ["DwexH2Protocol"]


class _ForgottenStream:
    """What a frame for a finished stream is handed to: it drops it."""

    async def handle(self, event: Event) -> None:
        pass  # the stream's response has ended; its late request data has no reader


_FORGOTTEN = _ForgottenStream()


class _StreamTable(dict[int, HTTPStream | WSStream]):
    """``H2Protocol.streams``, where looking up a finished stream gives `_FORGOTTEN`."""

    def __missing__(self, stream_id: int) -> Any:
        return _FORGOTTEN


class DwexH2Protocol(H2Protocol):
    """Hypercorn's HTTP/2 protocol that survives frames for streams it has finished."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams = _StreamTable()
