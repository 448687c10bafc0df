"""The guide's activity example on the broadcast hub: it scales out, and clients resume.

The guide's ``ActivityService`` is an in-process event emitter: run two workers and a client
on one never sees activity tracked on the other, and a client that reconnects loses what was
tracked meanwhile. Here the service publishes to a `Broadcast` topic, and the stream is the
hub's: every event has the hub's id, and ``Last-Event-ID`` replays what a client missed.

In memory (one process)::

    trio-dwex run examples.activity_broadcast:app

On Redis, shared by every worker and host that points at the same server::

    GUIDE_BROADCAST=redis://127.0.0.1:6379/0 trio-dwex run examples.activity_broadcast:app
    python -m examples.activity_broadcast --broadcast redis://127.0.0.1:6379/0 --port 9930

Then ``curl -N localhost:9929/activity/stream`` and, elsewhere,
``curl -X POST localhost:9930/activity -H 'content-type: application/json'
-d '{"userId": "u1", "activity": "login"}'``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Annotated

from trio_dwex import (
    Body,
    Controller,
    DwexApp,
    Headers,
    Injectable,
    Module,
    Post,
    Provider,
    Sse,
    SseEvent,
    SseStream,
    create_app,
)
from trio_dwex.broadcast import Broadcast

#: The topic every activity goes to.
TOPIC = "activity"


@Injectable()
class ActivityService:
    """Tracks activity by publishing it; whoever listens, in whichever process, gets it."""

    def __init__(self, hub: Broadcast) -> None:
        self.hub = hub

    async def track_activity(self, user_id: str, activity: str) -> str:
        event = SseEvent(
            data={"userId": user_id, "activity": activity, "timestamp": time.time_ns() // 10**6},
            event="activity",
        )
        return await self.hub.publish(TOPIC, event)


@dataclass
class ActivityIn:
    userId: str
    activity: str


@Controller("activity")
class ActivityController:
    def __init__(self, activity: ActivityService) -> None:
        self.activity = activity

    @Sse("stream")
    def stream(
        self, last_event_id: Annotated[str | None, Headers("last-event-id")] = None
    ) -> SseStream:
        # The hub's stream subscribes in the stream's own nursery: a client that leaves ends
        # its subscription, and a reconnecting one first gets what it missed.
        return self.activity.hub.stream(TOPIC, last_event_id)

    @Post()
    async def track(self, body: Annotated[ActivityIn, Body()]) -> dict[str, str]:
        return {"id": await self.activity.track_activity(body.userId, body.activity)}


def make_app(broadcast: str = "memory://") -> DwexApp:
    """The activity app on the hub that ``broadcast`` names (``memory://`` or ``redis://...``).

    Each call makes a new app with its own hub: two apps on one Redis URL behave like two
    worker processes.
    """

    # A factory, not use_value: the app enters what a factory makes (the hub's connection and
    # reader tasks live from startup to shutdown), and never enters a value it was given.
    @Module(
        controllers=[ActivityController],
        providers=[
            ActivityService,
            Provider(Broadcast, use_factory=lambda: Broadcast.from_url(broadcast)),
        ],
    )
    class ActivityModule:
        pass

    return create_app(ActivityModule)


app = make_app(os.environ.get("GUIDE_BROADCAST", "memory://"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--broadcast", default=os.environ.get("GUIDE_BROADCAST", "memory://"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9929)
    args = parser.parse_args(argv)
    from trio_dwex import run

    run(make_app(args.broadcast), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
