"""serving layer: `serve` (async) and `run` (sync) serve an app on Hypercorn's Trio worker;
the ``trio-dwex`` command.

- ``_serve`` — `serve`, `run`, the Hypercorn `Config` we use, `tune_gc`.
- ``_upstream`` — Hypercorn 0.18's worker code, copied with hooks for our classes (its
  docstring says how to move to a new Hypercorn release).
- ``_fixes`` — our per-connection server and its fixes for long-lived streams.
- ``_idle`` — the keep-alive timer as a deadline on the connection's read, not a task.
- ``_h2`` — our HTTP/2 protocol: bounded stream buffers, stalled streams reset, rapid-reset
  limits, no crash on late frames.
- ``_limits`` — `ServerLimits`: connections at once, and calm accept errors at the FD limit.
- ``_notice`` — the `DisconnectNotice` our server puts in each request's scope.
- ``_load`` — `load_app`, shared by the command (``_cli``) and the pytest plugin.
"""

from ._fixes import DroppedWrites, dropped_writes
from ._h2 import H2Limits
from ._limits import DEFAULT_MAX_CONNECTIONS, ServerLimits
from ._serve import DEFAULT_GC_THRESHOLD, DEFAULT_PORT, run, serve, tune_gc

__all__ = [
    "DEFAULT_GC_THRESHOLD",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PORT",
    "DroppedWrites",
    "H2Limits",
    "ServerLimits",
    "dropped_writes",
    "run",
    "serve",
    "tune_gc",
]
