"""Other ASGI apps mounted under a path prefix: static files, an admin, another framework's app.

A mounted app sees the request as ASGI says a mounted app should: ``root_path`` is the prefix
(after any the server set), ``path`` and ``raw_path`` are the whole path as sent, so the app
finds its own part as ``path[len(root_path):]`` (what Starlette and our `StaticFiles` do).
Its lifespan runs inside ours: started, in order, before the app takes requests; stopped, in
reverse, before our providers are. An app that does not speak the lifespan protocol (it
raises before answering startup) is served all the same, as ASGI servers do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._types import ASGIApp, Scope

__all__ = ["Mounts"]

logger = logging.getLogger("trio_dwex.asgi")

_PREFIX = re.compile(r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$")


class Mounts:
    """The apps mounted under prefixes, longest prefix first."""

    def __init__(self, mounts: Mapping[str, ASGIApp]) -> None:
        for prefix, app in mounts.items():
            if not isinstance(prefix, str) or not _PREFIX.match(prefix) or "/../" in prefix + "/":
                raise ValueError(
                    f"a mount prefix is a path such as '/static' (no trailing '/'), got {prefix!r}"
                )
            if not callable(app):
                raise ValueError(f"the app mounted at {prefix!r} is not an ASGI app: {app!r}")
        self.apps = dict(sorted(mounts.items(), key=lambda item: -len(item[0])))

    def find(self, path: str) -> tuple[str, ASGIApp] | None:
        """The mount serving ``path``: its prefix is the path, or a whole-segment start of it."""
        for prefix, app in self.apps.items():
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, app
        return None

    @staticmethod
    def scope_for(scope: Scope, prefix: str) -> Scope:
        return {**scope, "root_path": str(scope.get("root_path", "")) + prefix}

    @asynccontextmanager
    async def lifespan(self, state: dict[str, Any] | None = None) -> AsyncIterator[None]:
        """Start every mounted app's lifespan; stop them, last started first, on exit."""
        async with trio.open_nursery() as nursery:
            runs = [_Lifespan(prefix, app, state) for prefix, app in self.apps.items()]
            started: list[_Lifespan] = []
            try:
                for run in runs:
                    await nursery.start(run.run)
                    started.append(run)
                yield
            finally:
                for run in reversed(started):
                    await run.shutdown()


class _Lifespan:
    """One mounted app's lifespan, driven as a server drives it."""

    def __init__(self, prefix: str, app: ASGIApp, state: dict[str, Any] | None) -> None:
        self.prefix = prefix
        self.app = app
        self.state = state if state is not None else {}
        self._to_app, self._inbox = trio.open_memory_channel[dict[str, Any]](1)
        self._started = trio.Event()
        self._stopped = trio.Event()
        self._failure: str | None = None
        self._speaks_lifespan = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._app_task)
            await self._to_app.send({"type": "lifespan.startup"})
            await self._started.wait()
            if self._failure is not None:
                raise RuntimeError(
                    f"the app mounted at {self.prefix} failed to start: {self._failure}"
                )
            task_status.started()

    async def shutdown(self) -> None:
        if self._speaks_lifespan and not self._stopped.is_set():
            await self._to_app.send({"type": "lifespan.shutdown"})
            await self._stopped.wait()

    async def _app_task(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        try:
            await self.app({**scope, "state": self.state}, self._receive, self._send)
        except Exception:
            if self._started.is_set():
                raise
            # As ASGI servers do: an app that raises before answering startup has no lifespan.
            logger.debug("the app mounted at %s does not speak the lifespan protocol", self.prefix)
            self._speaks_lifespan = False
        finally:
            self._started.set()
            self._stopped.set()

    async def _receive(self) -> dict[str, Any]:
        return await self._inbox.receive()

    async def _send(self, message: Mapping[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.failed":
            self._failure = str(message.get("message", ""))
            self._started.set()
        elif kind == "lifespan.startup.complete":
            self._started.set()
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            self._stopped.set()
