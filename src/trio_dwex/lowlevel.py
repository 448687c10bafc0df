"""``trio_dwex.lowlevel``: the machinery under the app, for operations, tools and tests.

An app author rarely needs these. They are here for whoever runs a stream without the
framework (`run_stream` and an `EventSink` of their own, which may offer an
`ImmediateWriter`), counts streams (`StreamTracker`, whose `KeepaliveClock` wakes them for
their keep-alives), reads a stream's lifecycle (`StreamState`, `CloseReason`), writes an
interceptor that wraps a stream's source (`aclose_iterator`, `to_event`), or tunes the server
process (`tune_gc`, `dropped_writes`).
"""

from .serving import DEFAULT_GC_THRESHOLD, DroppedWrites, dropped_writes, tune_gc
from .streams._clock import KeepaliveClock
from .streams._iterators import aclose_iterator
from .streams._outlet import ImmediateWriter
from .streams._runner import EventSink, run_stream
from .streams._state import CloseReason, StreamState
from .streams._tracker import StreamStats, StreamTracker
from .wire._sse import json_serializer, to_event

__all__ = [
    "DEFAULT_GC_THRESHOLD",
    "CloseReason",
    "DroppedWrites",
    "EventSink",
    "ImmediateWriter",
    "KeepaliveClock",
    "StreamState",
    "StreamStats",
    "StreamTracker",
    "aclose_iterator",
    "dropped_writes",
    "json_serializer",
    "run_stream",
    "to_event",
    "tune_gc",
]
