"""serving layer: `serve` (async) and `run` (sync) serve an app on Hypercorn's Trio worker;
the ``trio-dwex`` command.

- ``_serve`` — `serve`, `run`, the Hypercorn `Config` we use, `tune_gc`.
- ``_upstream`` — Hypercorn 0.18's worker code, copied with hooks for our classes (its
  docstring says how to move to a new Hypercorn release).
- ``_fixes`` — our per-connection server and its fixes for long-lived streams.
- ``_notice`` — the `DisconnectNotice` our server puts in each request's scope.
- ``_load`` — `load_app`, shared by the command (``_cli``) and the pytest plugin.
"""

from ._fixes import DroppedWrites, dropped_writes
from ._serve import DEFAULT_GC_THRESHOLD, DEFAULT_PORT, run, serve, tune_gc

__all__ = [
    "DEFAULT_GC_THRESHOLD",
    "DEFAULT_PORT",
    "DroppedWrites",
    "dropped_writes",
    "run",
    "serve",
    "tune_gc",
]
