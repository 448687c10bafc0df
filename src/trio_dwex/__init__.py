"""trio-dwex: a Trio-native, structured-concurrency web framework with first-class Server-Sent Events."""

from .errors import (
    BadRequestException,
    ConfigurationError,
    ConflictException,
    DwexError,
    ForbiddenException,
    HttpException,
    InternalServerErrorException,
    MethodNotAllowedException,
    NotFoundException,
    ProviderNotFound,
    ServiceUnavailableException,
    StreamClosed,
    TooManyRequestsException,
    UnauthorizedException,
    UnprocessableEntityException,
)

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
    "ServiceUnavailableException",
    "StreamClosed",
    "TooManyRequestsException",
    "UnauthorizedException",
    "UnprocessableEntityException",
]
