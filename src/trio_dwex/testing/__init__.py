"""Test your streams against a real server: `serve_app`, the `EventSource` client, faulty clients,
and the decoder a client uses (`SseDecoder`, `MessageEvent`, `Comment`).

Everything here works in any Trio program; the pytest fixtures live in
``trio_dwex.testing.plugin``, which pytest loads by itself (an entry point) and which this
package does not import, so production code using `EventSource` does not import pytest.
See ``docs/testing.md``.
"""

from ..wire._decoder import Comment, MessageEvent, SseDecoder
from ._client import DEFAULT_RECONNECT_DELAY, EventSource, EventSourceError, StopReason
from ._faults import STALL_RECEIVE_BUFFER, RawStream, open_raw_stream, open_stalled_stream
from ._server import (
    TEST_GRACEFUL_TIMEOUT,
    ServerFactory,
    run_test_server,
    serve_app,
    server_config,
)

__all__ = [
    "DEFAULT_RECONNECT_DELAY",
    "STALL_RECEIVE_BUFFER",
    "TEST_GRACEFUL_TIMEOUT",
    "Comment",
    "EventSource",
    "EventSourceError",
    "MessageEvent",
    "RawStream",
    "ServerFactory",
    "SseDecoder",
    "StopReason",
    "open_raw_stream",
    "open_stalled_stream",
    "run_test_server",
    "serve_app",
    "server_config",
]
