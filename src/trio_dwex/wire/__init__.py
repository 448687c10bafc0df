"""The wire layer: sans-IO Server-Sent Events and path templates, standard library only.

Nothing here does I/O or imports trio: :class:`SseEvent` turns values into bytes,
:class:`SseDecoder` turns bytes back into events as an EventSource would, and
:func:`compile_path` turns route templates into matchers. Upper layers build on these names.
"""

from ._decoder import Comment, MessageEvent, SseDecoder
from ._paths import PathTemplate, compile_path, join_paths
from ._sse import (
    Serializer,
    SseEvent,
    current_serializer,
    json_serializer,
    to_event,
    use_serializer,
)

__all__ = [
    "Comment",
    "MessageEvent",
    "PathTemplate",
    "Serializer",
    "SseDecoder",
    "SseEvent",
    "compile_path",
    "current_serializer",
    "join_paths",
    "json_serializer",
    "to_event",
    "use_serializer",
]
