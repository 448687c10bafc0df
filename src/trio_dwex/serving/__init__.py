"""serving layer: `serve` (async) and `run` (sync) serve an app on Hypercorn's Trio worker;
the ``trio-dwex`` command."""

from ._hypercorn import DroppedWrites, dropped_writes
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
