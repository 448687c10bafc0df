"""The streams layer: `SseStream` and the runner that writes one client's events (no ASGI).

Internal: import from ``trio_dwex`` (`SseStream`, `StreamSettings`, `OverflowPolicy`) or
``trio_dwex.lowlevel`` (the runner, the tracker). See docs/architecture.md.
"""
