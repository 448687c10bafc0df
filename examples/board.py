"""A live order board: a page, its script as a static file, a login cookie, a JSON form, streams.

The whole product on one framework: ``GET /`` is the page, which loads ``/static/board.js``;
``POST /login`` sets the session cookie; ``POST /orders`` takes an order (every problem of a
bad one reported at once); ``GET /orders/stream`` streams every order, the retained ones first,
so a page that opens (or reloads) is never empty; ``GET /orders/private`` streams the orders of
the logged-in user only. Run it::

    trio-dwex run examples.board:app                       # one process, in-memory hub
    BOARD_BROADCAST=redis://127.0.0.1:6379/0 BOARD_SECRET=change-me \\
        trio-dwex run examples.board:app --workers 2        # several, on Redis

Environment: ``BOARD_BROADCAST`` (a ``redis://`` URL; default: in memory, one process),
``BOARD_SECRET`` (the key that signs session cookies: set it, the same for every worker;
without it each process makes a random one, so a session lasts as long as the process and is
known to that process only).

The session cookie is signed, not stored: any worker can check it, and nothing is kept per
user. It is ``HttpOnly`` (the page's scripts cannot read it, so an injected script cannot steal
it) and ``SameSite=Lax``; a second cookie, readable, holds the name for the page to show.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypedDict

from trio_dwex import (
    Body,
    Constraint,
    Controller,
    Cookie,
    DwexApp,
    ExecutionContext,
    Get,
    Headers,
    HTMLResponse,
    Injectable,
    JSONResponse,
    Module,
    Post,
    Provider,
    Req,
    Request,
    Response,
    Settings,
    Sse,
    SseEvent,
    SseStream,
    StaticFiles,
    UnauthorizedException,
    UseGuards,
    create_app,
)
from trio_dwex.broadcast import Broadcast, MemoryBackend, RedisBackend

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "board_static"
SESSION_COOKIE = "board_session"
USER_COOKIE = "board_user"
#: The topic of every order; each user's orders also go to ``orders:<user>``.
ORDERS = "orders"
USER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


@dataclass(frozen=True)
class BoardConfig:
    """The board's settings; `from_env` reads them from the environment."""

    #: Where orders are broadcast: ``None`` in this process, or a ``redis://`` URL.
    broadcast_url: str | None = None
    #: The key that signs session cookies.
    secret: bytes = b""
    #: How long a login lasts, in seconds.
    session_seconds: int = 8 * 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> BoardConfig:
        secret = environ.get("BOARD_SECRET", "").encode()
        if not secret:
            logger.warning(
                "BOARD_SECRET is not set: sessions are signed with a random key of this "
                "process, lost at restart and unknown to other workers"
            )
            secret = secrets.token_bytes(32)
        return cls(broadcast_url=environ.get("BOARD_BROADCAST") or None, secret=secret)


# -- sessions: signed cookies --------------------------------------------------------------------


@Injectable()
class Sessions:
    """Makes and checks session cookies: ``<user>.<expiry>.<signature>``, HMAC-SHA256."""

    def __init__(self, config: BoardConfig) -> None:
        self.secret = config.secret
        self.lifetime = config.session_seconds

    def make(self, user: str) -> str:
        payload = f"{user}.{int(time.time()) + self.lifetime}"
        return f"{payload}.{self._sign(payload)}"

    def user_of(self, cookie: str | None) -> str | None:
        """The user a cookie was made for, if it is ours, untouched and not expired."""
        if not cookie or cookie.count(".") < 2:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        user, _, expiry = payload.rpartition(".")
        if not expiry.isdigit() or int(expiry) < time.time():
            return None
        return user

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@Injectable()
class LoggedIn:
    """Lets a request through only with a valid session cookie; the user goes on the request."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def can_activate(self, context: ExecutionContext) -> bool:
        user = self.sessions.user_of(context.request.cookies.get(SESSION_COOKIE))
        if user is None:
            raise UnauthorizedException("log in first (POST /login)")
        context.request.user = user
        return True


# -- orders ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    #: 1 to 32 letters, digits, ".", "_" or "-": it goes in a cookie as is.
    user: Annotated[str, Constraint(pattern=USER_NAME.pattern)]


@dataclass(frozen=True)
class OrderIn:
    #: Something other than spaces, 100 characters at most.
    item: Annotated[str, Constraint(pattern=r"\S", max_length=100)]
    quantity: Annotated[int, Constraint(gt=0)]
    price: Annotated[float, Constraint(ge=0)]


class Order(TypedDict):
    """An order as the streams send it."""

    item: str
    quantity: int
    price: float
    #: Who ordered, when logged in.
    by: str | None


class Reset(TypedDict):
    """The hub's ``reset``: events after ``lastEventId`` are gone; reload the board."""

    reason: Literal["too_old", "unknown"]
    lastEventId: str
    message: str


#: What the order streams send.
ORDER_EVENTS: dict[str, object] = {"order": Order, "reset": Reset}


@Controller()
class BoardController:
    def __init__(self, hub: Broadcast, sessions: Sessions) -> None:
        self.hub = hub
        self.sessions = sessions

    @Get()
    def page(self) -> HTMLResponse:
        """The board: it loads ``/static/board.js``, which opens the streams."""
        return HTMLResponse((STATIC / "board.html").read_text())

    @Post("login")
    def login(self, login: Annotated[Login, Body()]) -> JSONResponse:
        """Log in by name (a demo: no password): the session cookie, and the name for the page."""
        response = JSONResponse({"user": login.user})
        lifetime = self.sessions.lifetime
        response.set_cookie(SESSION_COOKIE, self.sessions.make(login.user), max_age=lifetime)
        response.set_cookie(USER_COOKIE, login.user, max_age=lifetime, httponly=False)
        return response

    @Post("logout", status=204)
    def logout(self) -> Response:
        response = Response(status=204)
        response.delete_cookie(SESSION_COOKIE)
        response.delete_cookie(USER_COOKIE, httponly=False)
        return response

    @Post("orders", status=201)
    async def create(
        self,
        order: Annotated[OrderIn, Body()],
        session: Annotated[str | None, Cookie(SESSION_COOKIE)] = None,
    ) -> dict[str, str]:
        """Take an order; every board sees it. Logged in, it is also the user's own."""
        user = self.sessions.user_of(session)
        data = {"item": order.item, "quantity": order.quantity, "price": order.price, "by": user}
        order_id = await self.hub.publish(ORDERS, order_event(data))
        if user is not None:
            await self.hub.publish(f"{ORDERS}:{user}", order_event(data))
        return {"id": order_id}

    @Sse("orders/stream", events=ORDER_EVENTS)
    def stream(
        self, last_event_id: Annotated[str | None, Headers("last-event-id")] = None
    ) -> SseStream:
        """Every order: those the hub retains first (or those after ``Last-Event-ID``)."""
        return self.hub.stream(ORDERS, last_event_id, history=True)

    @Sse("orders/private", events=ORDER_EVENTS)
    @UseGuards(LoggedIn)
    def private(
        self,
        request: Annotated[Request, Req()],
        last_event_id: Annotated[str | None, Headers("last-event-id")] = None,
    ) -> SseStream:
        """The logged-in user's orders; 401 without a valid session cookie."""
        return self.hub.stream(f"{ORDERS}:{request.user}", last_event_id, history=True)

    @Get("healthz")
    def healthz(self) -> dict[str, object]:
        """Alive; which worker process answered (for load balancers, and for the tests)."""
        return {"ok": True, "worker": os.getpid()}


def order_event(order: dict[str, object]) -> SseEvent:
    """An order as an event: ``event: order``, its data the order as JSON."""
    return SseEvent(data=order, event="order")


def make_hub(config: BoardConfig) -> Broadcast:
    backend = (
        MemoryBackend() if config.broadcast_url is None else RedisBackend(config.broadcast_url)
    )
    return Broadcast(backend)


def build_app(config: BoardConfig | None = None, *, settings: Settings | None = None) -> DwexApp:
    """The board app; ``config`` defaults to `BoardConfig.from_env`."""
    config = config or BoardConfig.from_env()

    @Module(
        controllers=[BoardController],
        providers=[
            Provider(BoardConfig, use_value=config),
            Provider(Broadcast, use_factory=make_hub),
            Sessions,
            LoggedIn,
        ],
    )
    class BoardModule:
        pass

    return create_app(BoardModule, settings=settings, mounts={"/static": StaticFiles(STATIC)})


app = build_app()
