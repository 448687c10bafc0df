"""Copies of Hypercorn 0.18.0's Trio worker code, each given one hook for our own classes.

**What is copied.** From ``hypercorn`` 0.18.0 (``pyproject.toml`` pins ``>=0.18,<0.19``):

* `worker_serve` is ``hypercorn/trio/run.py::worker_serve``, plus a ``tcp_server`` parameter
  (the per-connection server class to use, upstream's ``TCPServer`` by default), a
  ``wrap_listeners`` one (our connection limit wraps the listeners; by default they are not)
  and a ``worker_context`` one (the class of the worker's context, upstream's by default).
* `TCPServer.run` is ``hypercorn/trio/tcp_server.py::TCPServer.run``, which makes its
  ``TaskGroup`` from the class attribute `TCPServer.task_group_class`, and its protocol
  selector from `TCPServer.protocol_wrapper_class`, instead of by name, and calls
  `TCPServer.ended` when it ends (a subclass overriding ``run`` for that would keep one more
  suspended frame per open connection).
* `ProtocolWrapper` is ``hypercorn/protocol/__init__.py::ProtocolWrapper`` (``__init__`` and
  ``handle``), which makes its protocols from the class attributes
  `ProtocolWrapper.h11_protocol_class` and `ProtocolWrapper.h2_protocol_class`.

**Why copies.** Upstream has no hook for any of these classes, and assigning to ``hypercorn``'s
module globals would change every Hypercorn server in the process, not only ours. So these
are copied and given those hooks, and nothing else: our own server, task group and HTTP/2
protocol (``_fixes.py``, ``_notice.py``, ``_h2.py``) plug into them. Nothing in this module
is trio-dwex's design; a bug here is upstream's, or a bad copy.

**How a line may differ from upstream.** Only with a ``# trio-dwex:`` comment saying why, or by
a lint annotation (``# noqa: ...``, ``# type: ignore[...]``) that our ``ruff`` and
``mypy --strict`` require. The imports differ too: absolute instead of relative, and sorted.
``tests/serving/test_upstream_copy.py`` checks this against the installed Hypercorn.

**Moving to a new Hypercorn release.** Install it, widen the pin in ``pyproject.toml``, and run
that test::

    pytest tests/serving/test_upstream_copy.py

For each copied function that upstream changed, it fails and prints ``diff -u upstream ours``.
Carry upstream's changes over here, keeping our hooks; then read ``_fixes.py`` against the new
``hypercorn/trio/tcp_server.py``, whose ``TCPServer`` methods our subclass overrides or calls
(``_read_data``, ``protocol_send``, ``_close``, ``send_lock``, ``_task_group``, ``idle_task``),
and ``_notice.py`` against ``hypercorn/trio/task_group.py`` (``TaskGroup.spawn_app``). Last,
run ``tests/serving/test_hypercorn_pitfalls.py``: its canaries say whether upstream still has
the leaks that ``_fixes.py`` works around.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from random import randint
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.events import Event, RawData
from hypercorn.protocol import ProtocolWrapper as UpstreamProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H2ProtocolAssumedError, H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer as UpstreamTCPServer
from hypercorn.trio.udp_server import UDPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ConnectionState, LifespanState
from hypercorn.utils import ShutdownError, parse_socket_addr, raise_shutdown, repr_socket_addr

__all__ = ["ProtocolWrapper", "TCPServer", "TCPServerFactory", "worker_serve"]

TCPServerFactory = Callable[
    [AppWrapper, Config, WorkerContext, LifespanState, trio.SSLStream[trio.SocketStream]],
    UpstreamTCPServer,
]
"""What `worker_serve` calls to serve one accepted connection: upstream's ``TCPServer`` or a
subclass, maybe with keyword arguments bound by `functools.partial`."""

ListenersWrapper = Callable[
    [list[trio.SSLListener[trio.SocketStream] | trio.SocketListener]],
    list[Any],
]
"""What `worker_serve` passes its listeners through before serving them: ``list`` (they are
served as they are), or a function that wraps each (our connection limit)."""


async def worker_serve(
    app: AppWrapper,
    config: Config,
    *,
    sockets: Sockets | None = None,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
    tcp_server: TCPServerFactory = UpstreamTCPServer,  # trio-dwex: the hook for our server
    wrap_listeners: ListenersWrapper = list,  # trio-dwex: the hook for our listeners
    worker_context: Callable[[int | None], WorkerContext] = WorkerContext,  # trio-dwex: hook
) -> None:
    config.set_statsd_logger_class(StatsdLogger)

    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    max_requests = None
    if config.max_requests is not None:
        max_requests = config.max_requests + randint(0, config.max_requests_jitter)
    context = worker_context(max_requests)  # trio-dwex: was WorkerContext

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:
            if sockets is None:
                sockets = config.create_sockets()
                for sock in sockets.secure_sockets:
                    sock.listen(config.backlog)
                for sock in sockets.insecure_sockets:
                    sock.listen(config.backlog)

            ssl_context = config.create_ssl_context()
            listeners: list[trio.SSLListener[trio.SocketStream] | trio.SocketListener] = []
            binds = []
            for sock in sockets.secure_sockets:
                listeners.append(
                    trio.SSLListener(
                        trio.SocketListener(trio.socket.from_stdlib_socket(sock)),
                        ssl_context,  # type: ignore[arg-type]
                        https_compatible=True,
                    )
                )
                bind = repr_socket_addr(sock.family, sock.getsockname())
                binds.append(f"https://{bind}")
                await config.log.info(f"Running on https://{bind} (CTRL + C to quit)")

            for sock in sockets.insecure_sockets:
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                bind = repr_socket_addr(sock.family, sock.getsockname())
                binds.append(f"http://{bind}")
                await config.log.info(f"Running on http://{bind} (CTRL + C to quit)")

            for sock in sockets.quic_sockets:
                await server_nursery.start(
                    UDPServer(
                        app, config, context, ConnectionState(lifespan_state.copy()), sock
                    ).run
                )
                bind = repr_socket_addr(sock.family, sock.getsockname())
                await config.log.info(f"Running on https://{bind} (QUIC) (CTRL + C to quit)")

            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)

                    nursery.start_soon(
                        partial(
                            trio.serve_listeners,
                            partial(
                                tcp_server,  # trio-dwex: was TCPServer
                                app,
                                config,
                                context,
                                ConnectionState(lifespan_state.copy()),
                            ),
                            wrap_listeners(listeners),  # trio-dwex: was listeners
                            handler_nursery=server_nursery,
                        ),
                    )

                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors  # noqa: B904
            finally:
                await context.terminated.set()
                server_nursery.cancel_scope.deadline = trio.current_time() + config.graceful_timeout

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


class ProtocolWrapper(UpstreamProtocolWrapper):
    """Upstream's protocol selector, with class attributes choosing the two protocol classes."""

    #: Makes the HTTP/1.1 protocol (which also starts an h2c upgrade).
    h11_protocol_class: Callable[..., H11Protocol] = H11Protocol
    #: Makes the HTTP/2 protocol, chosen by ALPN, prior knowledge or an h2c upgrade.
    h2_protocol_class: Callable[..., H2Protocol] = H2Protocol

    def __init__(
        self,
        app: AppWrapper,
        config: Config,
        context: WorkerContext,
        task_group: TaskGroup,
        state: ConnectionState,
        ssl: bool,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        send: Callable[[Event], Awaitable[None]],
        alpn_protocol: str | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.context = context
        self.task_group = task_group
        self.ssl = ssl
        self.client = client
        self.server = server
        self.send = send
        self.state = state
        self.protocol: H11Protocol | H2Protocol
        if alpn_protocol == "h2":
            self.protocol = self.h2_protocol_class(  # trio-dwex: was H2Protocol
                self.app,
                self.config,
                self.context,
                self.task_group,
                self.state,
                self.ssl,
                self.client,
                self.server,
                self.send,
            )
        else:
            self.protocol = self.h11_protocol_class(  # trio-dwex: was H11Protocol
                self.app,
                self.config,
                self.context,
                self.task_group,
                self.state,
                self.ssl,
                self.client,
                self.server,
                self.send,
            )

    async def initiate(self) -> None:
        return await self.protocol.initiate()

    async def handle(self, event: Event) -> None:
        try:
            return await self.protocol.handle(event)
        except H2ProtocolAssumedError as error:
            self.protocol = self.h2_protocol_class(  # trio-dwex: was H2Protocol
                self.app,
                self.config,
                self.context,
                self.task_group,
                self.state,
                self.ssl,
                self.client,
                self.server,
                self.send,
            )
            await self.protocol.initiate()
            if error.data != b"":
                return await self.protocol.handle(RawData(data=error.data))
        except H2CProtocolRequiredError as error:
            self.protocol = self.h2_protocol_class(  # trio-dwex: was H2Protocol
                self.app,
                self.config,
                self.context,
                self.task_group,
                self.state,
                self.ssl,
                self.client,
                self.server,
                self.send,
            )
            await self.protocol.initiate(error.headers, error.settings)
            if error.data != b"":
                return await self.protocol.handle(RawData(data=error.data))


class TCPServer(UpstreamTCPServer):
    """Upstream's per-connection server, with class attributes choosing its task group and
    its protocol selector."""

    #: The class of the connection's task group, which runs the app for each request.
    task_group_class: type[TaskGroup] = TaskGroup
    #: Makes what picks and runs the connection's protocol (HTTP/1.1 or HTTP/2).
    protocol_wrapper_class: Callable[..., ProtocolWrapper] = ProtocolWrapper

    async def run(self) -> None:
        try:  # trio-dwex: `ended` hears of the end however run() ends, without a frame more
            # trio-dwex: upstream learns that a stream has no TLS from an AttributeError, and
            # trio-dwex: an exception raised through a coroutine makes CPython build its frame
            # trio-dwex: object, which lives as long as the connection (0.3 KiB per stream).
            if isinstance(self.stream, trio.SocketStream):  # trio-dwex: no TLS
                alpn_protocol = "http/1.1"  # trio-dwex: as in "Not SSL" below
                socket = self.stream.socket  # trio-dwex: as in "Not SSL" below
                ssl = False  # trio-dwex: as in "Not SSL" below
            else:  # trio-dwex: upstream's code, indented
                try:
                    try:
                        with trio.fail_after(self.config.ssl_handshake_timeout):
                            await self.stream.do_handshake()
                    except (trio.BrokenResourceError, trio.TooSlowError):
                        return  # Handshake failed
                    alpn_protocol = self.stream.selected_alpn_protocol()
                    socket = self.stream.transport_stream.socket
                    ssl = True
                except AttributeError:  # Not SSL
                    alpn_protocol = "http/1.1"
                    socket = self.stream.socket
                    ssl = False

            try:
                client = parse_socket_addr(socket.family, socket.getpeername())
                server = parse_socket_addr(socket.family, socket.getsockname())

                async with self.task_group_class() as task_group:  # trio-dwex: was TaskGroup()
                    self._task_group = task_group
                    self.protocol = self.protocol_wrapper_class(  # trio-dwex: was ProtocolWrapper
                        self.app,
                        self.config,
                        self.context,
                        task_group,
                        ConnectionState(self.state),
                        ssl,
                        client,
                        server,
                        self.protocol_send,
                        alpn_protocol,
                    )
                    await self.protocol.initiate()
                    await self.idle_task.restart(self._task_group, self._idle_timeout)
                    await self._read_data()
            except OSError:
                pass
            finally:
                await self._close()
        finally:  # trio-dwex: (a subclass overriding run() for it would add one per connection)
            self.ended()  # trio-dwex: the hook

    def ended(self) -> None:  # trio-dwex: the hook for the end of the connection
        """The connection has ended: ``run`` is returning or raising. Nothing, here."""
