"""The exceptions trio-dwex raises, and the ones your handlers raise to answer with an HTTP error.

The hierarchy::

    DwexError                      anything trio-dwex raises on purpose
    ├── ConfigurationError         the app is wired wrong; raised by create_app(), before serving
    │   └── ProviderNotFound       a constructor asks for a type that no module provides
    ├── StreamClosed               send() on an SseStream that is already closed
    └── HttpException              answered to the client as JSON {"statusCode", "error", "message"}
        ├── BadRequestException            400
        │   └── RequestValidationError     400, with "errors": every problem of the request
        ├── UnauthorizedException          401
        ├── ForbiddenException             403
        ├── NotFoundException              404
        ├── MethodNotAllowedException      405
        ├── ConflictException              409
        ├── UnprocessableEntityException   422
        ├── TooManyRequestsException       429
        ├── InternalServerErrorException   500
        └── ServiceUnavailableException    503

This module imports nothing else from trio-dwex, so every layer can use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import ClassVar, Final

__all__ = [
    "BadRequestException",
    "ConfigurationError",
    "ConflictException",
    "DwexError",
    "ForbiddenException",
    "HttpException",
    "InternalServerErrorException",
    "MethodNotAllowedException",
    "NotFoundException",
    "ProviderNotFound",
    "RequestValidationError",
    "ServiceUnavailableException",
    "StreamClosed",
    "TooManyRequestsException",
    "UnauthorizedException",
    "UnprocessableEntityException",
]


#: The most characters of one client-supplied value (a path, a method, a header, a body field's
#: name) that trio-dwex repeats in an error message; a longer one is cut there and marked
#: with "...". A client may send kilobytes of target or key, and its error should cost the
#: server a few dozen bytes to answer, not as much again.
MAX_ECHO: Final = 100


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters, with "..." after the cut, for an error message."""
    return text if len(text) <= limit else text[:limit] + "..."


class DwexError(Exception):
    """Base class of every error trio-dwex raises on purpose."""


class ConfigurationError(DwexError):
    """The application is assembled wrong (a bad route, module or provider).

    Raised while the app is built, so a mistake stops the server before it takes a request.
    """


class ProviderNotFound(ConfigurationError):
    """A constructor asks for a type that no module in scope provides."""


class StreamClosed(DwexError):
    """An event was sent on an :class:`~trio_dwex.SseStream` that is already closed.

    The client has gone, or someone called ``close()``. Check ``stream.is_closed`` first, or use
    ``send_nowait()``, which reports a closed stream by returning ``False`` instead.
    """


class HttpException(DwexError):
    """Raise it from a handler, a guard or a parameter converter to answer with an HTTP error.

    The client gets ``status`` and the JSON body ``{"statusCode": status, "error": <reason
    phrase>, "message": message}``. ``headers`` are added to the response (for example
    ``Retry-After`` on a 503, or ``WWW-Authenticate`` on a 401).
    """

    default_status: ClassVar[int] = 500

    def __init__(
        self,
        status: int | None = None,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        status = self.default_status if status is None else status
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            raise ValueError(
                f"HttpException status must be a known HTTP status code (400-599), got {status!r}"
            ) from None
        if not 400 <= status <= 599:
            raise ValueError(
                f"HttpException status must be an error code (400-599), got {status}; "
                "return a Response for other statuses"
            )
        self.status = status
        self.error = reason
        self.message = reason if message is None else message
        self.headers = dict(headers or {})
        super().__init__(f"{status} {reason}: {self.message}")

    def to_json(self) -> dict[str, object]:
        """The body sent to the client."""
        return {"statusCode": self.status, "error": self.error, "message": self.message}


class _FixedStatusException(HttpException):
    """An HttpException whose class fixes the status: ``raise NotFoundException("no job 7")``."""

    def __init__(
        self, message: str | None = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(self.default_status, message, headers=headers)


class BadRequestException(_FixedStatusException):
    """400 Bad Request."""

    default_status = 400


class RequestValidationError(BadRequestException):
    """400: the request does not fit the handler's parameters; every problem, at once.

    The body adds ``errors``, one ``{"location", "message"}`` per problem, where the location
    says where the value came from and, in a JSON body, where inside it: ``query.limit``,
    ``path.jobId``, ``header.x-request-id``, ``cookie.session``, ``body``, ``body.quantity``,
    ``body.items[2].name``; the message completes it (``must be an integer, got 'two'``).
    ``message`` is one sentence per problem (at most `MAX_LISTED` of them).
    """

    #: The problems listed in ``message`` and ``errors``; a request with more says how many.
    MAX_LISTED: ClassVar[int] = 20

    def __init__(
        self, problems: Sequence[tuple[str, str, str]], *, headers: Mapping[str, str] | None = None
    ) -> None:
        """``problems``: ``(location, message, sentence)`` triples, at least one."""
        if not problems:
            raise ValueError("a RequestValidationError needs at least one problem")
        self.problems = tuple(problems)
        listed = self.problems[: self.MAX_LISTED]
        sentences = "; ".join(sentence for _, _, sentence in listed)
        if len(self.problems) == 1:
            summary = sentences
        else:
            more = len(self.problems) - len(listed)
            tail = f"; and {more} more" if more else ""
            summary = f"{len(self.problems)} problems: {sentences}{tail}"
        super().__init__(summary, headers=headers)

    @classmethod
    def merge(cls, errors: Sequence[RequestValidationError]) -> RequestValidationError:
        """One error listing the problems of all of ``errors``, in order."""
        return cls([problem for error in errors for problem in error.problems])

    @property
    def errors(self) -> list[dict[str, str]]:
        """The problems as the client sees them (at most `MAX_LISTED`)."""
        listed = self.problems[: self.MAX_LISTED]
        return [{"location": location, "message": message} for location, message, _ in listed]

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "errors": self.errors}


class UnauthorizedException(_FixedStatusException):
    """401 Unauthorized."""

    default_status = 401


class ForbiddenException(_FixedStatusException):
    """403 Forbidden."""

    default_status = 403


class NotFoundException(_FixedStatusException):
    """404 Not Found."""

    default_status = 404


class MethodNotAllowedException(_FixedStatusException):
    """405 Method Not Allowed."""

    default_status = 405


class ConflictException(_FixedStatusException):
    """409 Conflict."""

    default_status = 409


class GoneException(_FixedStatusException):
    """410 Gone: it existed, and is no more (an expired run, say)."""

    default_status = 410


class UnprocessableEntityException(_FixedStatusException):
    """422 Unprocessable Entity."""

    default_status = 422


class TooManyRequestsException(_FixedStatusException):
    """429 Too Many Requests."""

    default_status = 429


class InternalServerErrorException(_FixedStatusException):
    """500 Internal Server Error."""

    default_status = 500


class ServiceUnavailableException(_FixedStatusException):
    """503 Service Unavailable."""

    default_status = 503
