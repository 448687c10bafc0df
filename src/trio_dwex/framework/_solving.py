"""A :class:`~._analysis.CallPlan` solved for one request: the handler's keyword arguments.

All the thinking was done when the plan was built; what is left per request is a loop over
plain data: look the value up, convert it, or raise a 400 that names the parameter and where
it comes from. JSON bodies are decoded by ``_body``.
"""

from __future__ import annotations

from typing import Any

from .._errors import RequestValidationError
from .._unset import UNSET
from ._analysis import CallPlan, ParamPlan
from ._body import check_json_media_type, decode_json_body
from ._convert import ConversionError
from ._params import RequestLike
from ._scope import RequestScope

__all__ = ["solve_params"]


async def solve_params(
    plan: CallPlan, request: RequestLike, scope: RequestScope | None = None
) -> dict[str, Any]:
    """The keyword arguments to call the handler of ``plan`` with, for ``request``.

    Values are converted to the annotated types. A missing value takes the parameter's default;
    without one, ``T | None`` gets None, ``list[T]`` an empty list, and anything else is
    required. A scalar query parameter given several times takes the last value.

    ``Inject()`` parameters are taken from ``scope``, the request's providers, once every
    other parameter has been solved without a problem.

    Every parameter is solved before an error is raised, so that the client learns of every
    problem at once.

    Raises:
        RequestValidationError: values that do not convert, missing required values, or a
            body that is not JSON (or is empty when required, or nested deeper than
            :data:`~._body.MAX_BODY_DEPTH`); each problem names the parameter and where it
            comes from, e.g. ``query parameter 'count' must be an integer, got 'abc'``.
        HttpException: 415 for a non-empty body read as JSON whose ``Content-Type`` is not
            ``application/json`` or ``application/*+json`` (or is missing).
    """
    kwargs: dict[str, Any] = {}
    errors: list[RequestValidationError] = []
    query: dict[str, list[str]] = {}
    if any(param.source == "query" for param in plan.params):
        for key, value in request.query_params:
            query.setdefault(key, []).append(value)
    for param in plan.params:
        try:
            if param.source == "body":
                kwargs[param.name] = await _solve_body(param, request)
            elif param.source == "inject":
                continue  # after the request has been found valid, below
            else:
                kwargs[param.name] = _solve(param, request, query)
        except RequestValidationError as error:
            errors.append(error)
    if errors:
        raise errors[0] if len(errors) == 1 else RequestValidationError.merge(errors)
    # Providers last: a request that does not fit never takes a database connection.
    for param in plan.params:
        if param.source == "inject":
            if scope is None:
                raise RuntimeError(f"{plan.qualname} injects providers: pass a RequestScope")
            kwargs[param.name] = await scope.get(param.token, param.release)
    return kwargs


def _solve(param: ParamPlan, request: RequestLike, query: dict[str, list[str]]) -> Any:
    source = param.source
    if source == "request":
        return request
    if param.whole_mapping:
        return dict(request.headers)
    assert param.key is not None
    values: list[str]
    if source == "query":
        values = query.get(param.key, [])
    else:
        if source == "path":
            found = request.path_params.get(param.key)
        elif source == "cookie":
            found = request.cookies.get(param.key)
        else:
            found = request.headers.get(param.key)
        values = [] if found is None else [found]
    if param.many and values:
        return [_convert_text(param, value) for value in values]
    if values:
        return _convert_text(param, values[-1])
    return _missing(param)


def _location(param: ParamPlan) -> str:
    return param.source if param.key is None else f"{param.source}.{param.key}"


def _problem(param: ParamPlan, problem: str) -> RequestValidationError:
    return RequestValidationError([(_location(param), problem, f"{param.label} {problem}")])


def _convert_text(param: ParamPlan, value: str) -> Any:
    assert param.text is not None
    try:
        return param.text(value)
    except ConversionError as exc:
        raise _problem(param, exc.problem) from None


def _missing(param: ParamPlan) -> Any:
    if param.default is not UNSET:
        return param.default
    if param.optional:
        return None
    if param.many:
        return []
    if param.source == "body":
        problem = "is required; send a JSON document"
        raise RequestValidationError([("body", problem, f"request body {problem}")])
    raise _problem(param, "is required")


async def _solve_body(param: ParamPlan, request: RequestLike) -> Any:
    raw = await request.body()
    if param.raw_body:
        # An empty body is a valid raw body, unless the handler gave a default for that case.
        if raw or (param.default is UNSET and not param.optional):
            return raw
        return _missing(param)
    if not raw.strip():
        return _missing(param)
    check_json_media_type(request.headers.get("content-type"))
    assert param.json is not None
    return decode_json_body(raw, param.json)
