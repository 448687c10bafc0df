"""Developer tasks. `nox -s demo` serves the guide's example app; `nox -s tests` runs the suite.

CI runs the sessions in `nox.options.sessions`; the benchmark and the long fuzz run are opt-in.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

TOOLS = ["ruff>=0.6", "import-linter>=2.0"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, against real Hypercorn servers on loopback ports.

    The real-client tests drive Chromium, nginx, curl and redis-server, and a bench smoke test
    valgrind; the first run installs them from Debian's packages
    (`.ci/install-system-packages`, which needs root or sudo and touches nothing once they are
    there).
    """
    session.run("bash", ".ci/install-system-packages", external=True)
    session.install("-e", ".[test,bench]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and the import-linter contracts that keep the layers apart."""
    session.install(*TOOLS)
    session.install("-e", ".")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the library, the examples users copy from, the tests and the benchmark."""
    session.install("-e", ".[test,bench]")  # mypy comes with the test extra
    session.run("mypy", "--strict", "src", "examples", "tests", "bench")


@nox.session
def demo(session: nox.Session) -> None:
    """The SSE guide's example app on http://127.0.0.1:9929 (Ctrl+C to stop)."""
    session.install("-e", ".")
    port = os.environ.get("PORT", "9929")
    session.run("trio-dwex", "run", "examples.guide:app", "--port", port, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark against sse-starlette and the raw Hypercorn-Trio floor (docs/performance.md).

    Not part of CI: a full run takes about 15 minutes. ``nox -s bench -- --quick`` is a smoke run.
    """
    session.install("-e", ".[bench,redis]")
    session.run("python", "-m", "bench", *session.posargs)
    session.run("python", "-m", "bench.tokens")  # POST token streams against FastAPI
    session.run("python", "-m", "bench.compression")  # what gzip saves on a JSON stream


@nox.session
def reliability(session: nox.Session) -> None:
    """Disconnect storm, slow clients, full-size shutdown, HTTP/2 attacks, stalled clients,
    and a drain without a reconnect storm."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "bench.reliability", *session.posargs)
    session.run("python", "-m", "bench.attacks")  # HTTP/2 attacks, ours and plain Hypercorn
    session.run("python", "-m", "bench.stalled")  # memory with 2,000 stalled clients
    session.run("python", "-m", "bench.drain")  # SIGTERM with 2,000 streams: reconnects spread


@nox.session
def fuzz(session: nox.Session) -> None:
    """The property tests with 100,000 examples each (the default run uses a few hundred)."""
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/wire/test_roundtrip.py",
        "tests/reliability/test_fuzz.py",
        "tests/broadcast/test_last_event_id.py",
        *session.posargs,
        env={"HYPOTHESIS_EXAMPLES": "100000"},
    )
