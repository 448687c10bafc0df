"""serving layer: `serve` runs an app on Hypercorn's Trio worker; the ``trio-dwex`` command."""

from .serve import DEFAULT_PORT, serve

__all__ = ["DEFAULT_PORT", "serve"]
