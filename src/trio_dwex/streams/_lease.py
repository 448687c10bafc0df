"""`StreamLease`: whose a stream is and until when, as a guard decided when it let it in.

A stream outlives the check that admitted it: a token expires an hour into a stream, a user
logs out in another tab. The lease is what the app keeps of that check, per stream: its
**owner** (the key that per-owner caps count and that `StreamTracker.close_where` matches),
its **expiry** (the stream ends then, and its client is told when to come back), the
**client** address (for per-address caps) and free-form **labels**.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

__all__ = ["StreamLease"]


class StreamLease:
    """Whose a stream is and until when: set by a guard, kept by the stream for its life.

    A guard reaches it as ``context.lease`` (a handler as ``request.lease``) and fills it in
    before the stream opens; the stream reads it once, as it starts::

        def can_activate(self, context: ExecutionContext) -> bool:
            claims = verify(context.request.headers.get("authorization", ""))
            context.lease.owner = claims.subject
            context.lease.expire_at(claims.expires)  # Unix seconds or an aware datetime
            return True

    Attributes:
        owner: who the stream belongs to (a user id, an API key's id), or ``None``. Counted
            by ``Settings.max_streams_per_owner`` and matched by `StreamTracker.close_where`.
        expires_at: when the stream must end (Unix seconds), or ``None``; see `expire_at`.
        client: the client's address, as the server saw it (a proxy's, behind one); set by
            the app from the request, counted by ``Settings.max_streams_per_client``.
        labels: anything else to match streams by later (a session id, a tenant).
    """

    __slots__ = ("client", "expires_at", "labels", "owner")

    def __init__(
        self,
        owner: str | None = None,
        *,
        expires_at: float | None = None,
        client: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self.owner = owner
        self.expires_at: float | None = None
        if expires_at is not None:
            self.expire_at(expires_at)
        self.client = client
        self.labels: dict[str, str] = dict(labels or {})

    def expire_at(self, when: float | datetime) -> None:
        """End the stream at ``when``: Unix seconds (a JWT's ``exp``) or an aware datetime.

        The stream ends then (`CloseReason.EXPIRED`) with a ``retry`` field, so its client
        comes back, with whatever credentials it has by then. Given twice, the earlier wins:
        a lease never grows longer than a guard allowed.

        Raises:
            ValueError: a naive datetime (whose zone is a guess), or a number that is not a
                finite time.
        """
        if isinstance(when, datetime):
            if when.tzinfo is None or when.utcoffset() is None:
                raise ValueError(
                    f"StreamLease.expire_at needs an aware datetime (with a tzinfo), got {when!r}"
                )
            seconds = when.timestamp()
        elif isinstance(when, int | float) and not isinstance(when, bool) and math.isfinite(when):
            seconds = float(when)
        else:
            raise ValueError(
                f"StreamLease.expire_at takes Unix seconds or an aware datetime, got {when!r}"
            )
        if self.expires_at is None or seconds < self.expires_at:
            self.expires_at = seconds

    def seconds_left(self) -> float | None:
        """Seconds until ``expires_at`` (negative once past), or ``None`` if it has none."""
        return None if self.expires_at is None else self.expires_at - time.time()

    def __repr__(self) -> str:
        return (
            f"StreamLease(owner={self.owner!r}, expires_at={self.expires_at!r}, "
            f"client={self.client!r}, labels={self.labels!r})"
        )
