"""A loopback TCP proxy that can cut a hub off from Redis without stopping Redis: a partition.

While partitioned it drops every open connection and closes new ones as they arrive; healed,
it pipes bytes both ways again. `lose_reply` makes Redis run a command whose reply never comes
back (the connection drops as the reply arrives), as when a network fails at the worst moment.
Run it in a nursery with ``await nursery.start(proxy.run)``.
"""

from __future__ import annotations

import trio


class _Pipe:
    __slots__ = ("doomed", "scope")

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        #: Set when a command whose reply must be lost went to Redis: the connection drops as
        #: soon as Redis answers, without passing the answer on.
        self.doomed = False


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.up = True
        self._pipes: set[trio.CancelScope] = set()
        self._lose: dict[bytes, int] = {}
        #: How many replies `lose_reply` made the proxy lose, per command.
        self.lost: dict[bytes, int] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def partition(self) -> None:
        """Drop every connection through the proxy and refuse new ones until `heal`."""
        self.up = False
        for scope in list(self._pipes):
            scope.cancel()

    def heal(self) -> None:
        self.up = True

    def lose_reply(self, command: bytes, times: int = 1) -> None:
        """The next ``times`` ``command``\\ s reach Redis, which runs them, but their replies are
        lost: the connection drops when the reply arrives, so the client sees a connection
        error for a command that was applied."""
        self._lose[command.upper()] = times

    def _marks_doom(self, data: bytes | bytearray) -> bool:
        upper = data.upper()
        for command, left in self._lose.items():
            # A command is a RESP array whose first bulk string is its name.
            if left > 0 and b"$%d\r\n%s\r\n" % (len(command), command) in upper:
                self._lose[command] = left - 1
                self.lost[command] = self.lost.get(command, 0) + 1
                return True
        return False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        async with client:
            if not self.up:
                return
            try:
                server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            except OSError:
                return
            async with server, trio.open_nursery() as nursery:
                pipe = _Pipe(nursery.cancel_scope)
                self._pipes.add(nursery.cancel_scope)
                nursery.start_soon(self._upstream, client, server, pipe)
                nursery.start_soon(self._downstream, server, client, pipe)
            self._pipes.discard(nursery.cancel_scope)

    async def _upstream(
        self, source: trio.SocketStream, sink: trio.SocketStream, pipe: _Pipe
    ) -> None:
        try:
            async for data in source:
                if self._lose and self._marks_doom(data):
                    pipe.doomed = True  # before Redis can answer
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        pipe.scope.cancel()

    @staticmethod
    async def _downstream(source: trio.SocketStream, sink: trio.SocketStream, pipe: _Pipe) -> None:
        try:
            async for data in source:
                if pipe.doomed:
                    break  # Redis has run the command: drop its reply and the connection
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        pipe.scope.cancel()
