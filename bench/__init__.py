"""trio-dwex's benchmark against sse-starlette and the raw Hypercorn-Trio floor (issue 7).

Run it with ``python -m bench`` (full), ``python -m bench --quick`` or ``nox -s bench``; see
``docs/performance.md``.
"""
