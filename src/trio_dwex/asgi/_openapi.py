"""The app's OpenAPI 3.2 document, built once from the compiled routes.

What each route contributes:

- its path template and method, a tag per controller, an ``operationId``
  (``Controller_method``), a summary and description from the handler's docstring;
- its ``Query``/``Param``/``Headers`` parameters (and cookies, once a marker reads them) with
  the schema of their annotation, whether they are required, and their default;
- its ``Body()`` as a JSON request body, from the body's type;
- for a plain route, the response its return annotation promises (``None``: 204);
- for a stream route, a ``text/event-stream`` response whose ``itemSchema`` describes one
  parsed event (OpenAPI 3.2, "Special Considerations for Server-Sent Events"): ``data`` is
  the text of the ``data:`` lines, described by ``contentMediaType``/``contentSchema`` when
  it is JSON, ``event``, ``id`` and ``retry`` as the event stream defines them. A route that
  declares its events (``@Sse(events=...)``) gets a ``oneOf`` with one branch per event name,
  ``event`` a ``const`` in each;
- every error the framework may answer instead, all with the ``HttpError`` body: 400 for a
  parameter or body that does not convert, 401/403 behind guards, 404 when a path parameter
  is empty, 408, 413 and 415 for bodies, 503 for streams refused (``max_streams``, shutdown).

What OpenAPI has no word for is in ``x-dwex-`` extensions: the guards of an operation, and a
stream's keep-alive, lifetime limit and buffer.
"""

from __future__ import annotations

import enum
import inspect
import json
import math
import typing
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from .._errors import ConfigurationError
from .._unset import UNSET
from ..framework._analysis import ParamPlan
from ..framework._convert import UnsupportedType, is_optional, strip_optional
from ..framework._events import MESSAGE, text_and_json
from ..framework._module import ApplicationPlan
from ..framework._routing import RoutePlan
from ..framework._schema import JsonSchema, SchemaRegistry
from ..streams._settings import StreamSettings
from ._responses import Response
from ._settings import OpenAPISettings, Settings

__all__ = ["OPENAPI_VERSION", "build_document"]

#: The version of the OpenAPI Specification the document follows.
OPENAPI_VERSION: Final = "3.2.0"

_IN: Final[Mapping[str, str]] = {
    "query": "query",
    "path": "path",
    "header": "header",
    "cookie": "cookie",
}

# OpenAPI: a header parameter with one of these names "SHALL be ignored"; they are described
# by the request body's media type, the response's, and security schemes.
_IGNORED_HEADERS: Final = frozenset({"accept", "content-type", "authorization"})

_ERROR_SCHEMA: Final[JsonSchema] = {
    "type": "object",
    "description": "Every error trio-dwex answers: the status again, its reason, and why.",
    "properties": {
        "statusCode": {"type": "integer", "minimum": 400, "maximum": 599},
        "error": {"type": "string", "description": "The status's reason phrase."},
        "message": {"type": "string", "description": "What went wrong, for a person."},
        "errors": {
            "type": "array",
            "description": (
                "A 400 for a request that does not fit: every problem, where it is "
                "(query.limit, body.items[2].name) and what is wrong there."
            ),
            "items": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "message": {"type": "string"}},
                "required": ["location", "message"],
            },
        },
    },
    "required": ["statusCode", "error", "message"],
}

# The generic parsed event of the event-stream format (OpenAPI 3.2 gives the same one).
_EVENT_SCHEMA: Final[JsonSchema] = {
    "type": "object",
    "description": (
        "One event of a text/event-stream, as a client parses it: comments and unknown "
        "fields are dropped, and the data lines are joined by newlines."
    ),
    "required": ["data"],
    "properties": {
        "data": {"type": "string"},
        "event": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer", "minimum": 0},
    },
}

#: Security schemes a guard may name without declaring them in the settings.
_KNOWN_SCHEMES: Final[Mapping[str, Mapping[str, str]]] = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "basic": {"type": "http", "scheme": "basic"},
}

#: Error responses by status: (component name, description).
_ERRORS: Final[Mapping[int, tuple[str, str]]] = {
    400: ("BadRequest", "A parameter or the body is missing or does not convert."),
    401: ("Unauthorized", "A guard found no valid credentials."),
    403: ("Forbidden", "A guard refused the request."),
    404: ("NotFound", "No route has this path (a path parameter was empty, say)."),
    405: ("MethodNotAllowed", "The path exists, but not with this method; see Allow."),
    408: ("RequestTimeout", "The body did not arrive within the app's body_timeout."),
    413: ("ContentTooLarge", "The body is larger than the app's max_body_size."),
    415: ("UnsupportedMediaType", "A JSON body was sent without a JSON Content-Type."),
    503: ("ServiceUnavailable", "Too many open streams, or the server is shutting down."),
}


def build_document(plan: ApplicationPlan, settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.2 document of ``plan``'s routes, as JSON-able data.

    Raises:
        ConfigurationError: a type the document cannot describe (naming the route), or a
            guard whose ``security_scheme`` names no scheme of ``settings.openapi``.
    """
    options = settings.openapi or OpenAPISettings()
    builder = _Builder(options, settings.streams)
    for route in plan.routes:
        builder.add(route)
    return builder.document(plan)


class _Builder:
    def __init__(self, options: OpenAPISettings, streams: StreamSettings) -> None:
        self.options = options
        self.streams = streams
        self.registry = SchemaRegistry()
        # Reserved before any user type is named: one of those called HttpError gets another name.
        self.registry.components["HttpError"] = _ERROR_SCHEMA
        self.registry.components["SseEvent"] = _EVENT_SCHEMA
        self.has_streams = False
        self.paths: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, JsonSchema] = {}
        self.operation_ids: set[str] = set()
        self.errors_used: set[int] = set()
        # Whether a route's own responses= use the HttpError schema.
        self.error_schema_used = False
        # Schemes named by guards that the settings leave out but whose meaning is plain.
        self.implied_schemes: dict[str, Mapping[str, Any]] = {}

    def document(self, plan: ApplicationPlan) -> dict[str, Any]:
        info: dict[str, Any] = {"title": self.options.title, "version": self.options.version}
        if self.options.description:
            info["description"] = self.options.description
        document: dict[str, Any] = {"openapi": OPENAPI_VERSION, "info": info}
        if self.options.servers:
            document["servers"] = [
                {"url": server} if isinstance(server, str) else dict(server)
                for server in self.options.servers
            ]
        if self.tags:
            document["tags"] = list(self.tags.values())
        document["paths"] = self.paths
        schemas = dict(self.registry.components)
        if not (self.errors_used or self.error_schema_used):
            del schemas["HttpError"]
        if not self.has_streams:
            del schemas["SseEvent"]
        components: dict[str, Any] = {"schemas": dict(sorted(schemas.items()))}
        responses = {}
        for status in sorted(self.errors_used):
            name, description = _ERRORS[status]
            response: dict[str, Any] = {
                "description": description,
                "content": {"application/json": {"schema": _ref("HttpError")}},
            }
            if status == 503:
                response["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before trying again.",
                        "schema": {"type": "integer", "minimum": 0},
                    }
                }
            if status == 401:
                response["headers"] = {
                    "WWW-Authenticate": {
                        "description": "The scheme the guard expects, when it says.",
                        "schema": {"type": "string"},
                    }
                }
            responses[name] = response
        if responses:
            components["responses"] = responses
        schemes = {**self.implied_schemes, **self.options.security_schemes}
        if schemes:
            components["securitySchemes"] = {name: dict(scheme) for name, scheme in schemes.items()}
        document["components"] = components
        plain: dict[str, Any] = json.loads(json.dumps(document))  # independent JSON values
        return plain

    # -- one route ----------------------------------------------------------------------------

    def add(self, route: RoutePlan) -> None:
        try:
            operation = self._operation(route)
        except UnsupportedType as exc:
            raise ConfigurationError(
                f"{route.name} ({route.method} {route.path}): the OpenAPI document cannot "
                f"describe it: {exc}"
            ) from None
        self.paths.setdefault(route.path, {})[route.method.lower()] = operation

    def _operation(self, route: RoutePlan) -> dict[str, Any]:
        operation: dict[str, Any] = {"tags": [self._tag(route.controller_class)]}
        summary, description = _doc_parts(route.handler)
        if summary:
            operation["summary"] = summary
        if description:
            operation["description"] = description
        operation["operationId"] = self._operation_id(route)
        parameters = self._parameters(route)
        if parameters:
            operation["parameters"] = parameters
        body = next((p for p in route.call_plan.params if p.source == "body"), None)
        if body is not None:
            operation["requestBody"] = self._request_body(body)
        responses: dict[str, Any] = {}
        if route.kind == "sse":
            responses["200"] = self._stream_response(route)
        else:
            responses.update(self._plain_responses(route))
        errors = self._error_statuses(route, parameters, body) - set(route.responses)
        for status in sorted(errors):
            self.errors_used.add(status)
            responses[str(status)] = {"$ref": f"#/components/responses/{_ERRORS[status][0]}"}
        for status, said in sorted(route.responses.items()):
            responses[str(status)] = self._own_error(route, status, said)
        operation["responses"] = responses
        security = self._security(route)
        if security:
            operation["security"] = [security]
        if route.guards:
            operation["x-dwex-guards"] = [type(guard).__name__ for guard in route.guards]
        if route.kind == "sse":
            operation["x-dwex-stream"] = self._stream_details(route)
        return operation

    def _tag(self, controller: type) -> str:
        name = controller.__name__.removesuffix("Controller") or controller.__name__
        if name not in self.tags:
            tag: JsonSchema = {"name": name}
            doc = inspect.getdoc(controller)
            if doc:
                tag["description"] = doc
            self.tags[name] = tag
        return name

    def _operation_id(self, route: RoutePlan) -> str:
        base = f"{route.controller_class.__name__}_{route.handler.__name__}"
        candidate = base
        if candidate in self.operation_ids:
            candidate = f"{base}_{route.method.lower()}"
        number = 2
        while candidate in self.operation_ids:
            candidate = f"{base}_{number}"
            number += 1
        self.operation_ids.add(candidate)
        return candidate

    # -- parameters and body --------------------------------------------------------------------

    def _parameters(self, route: RoutePlan) -> list[dict[str, Any]]:
        parameters = []
        read_from_path = set()
        for param in route.call_plan.params:
            where = _IN.get(param.source)
            if where is None or param.key is None:
                continue  # the body, the request, or every header at once
            if where == "header" and param.key in _IGNORED_HEADERS:
                continue
            if where == "path":
                read_from_path.add(param.key)
            parameters.append(self._parameter(param, where))
        for name in route.template.param_names:
            if name not in read_from_path:
                # Captured by the template but not read by the handler: still part of the path.
                parameters.append(
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1},
                    }
                )
        return parameters

    def _parameter(self, param: ParamPlan, where: str) -> dict[str, Any]:
        annotation = strip_optional(param.annotation)
        if param.many:
            args = typing.get_args(annotation)
            item = strip_optional(args[0]) if args else str
            schema: JsonSchema = {"type": "array", "items": self._text_schema(item)}
        else:
            schema = self._text_schema(annotation)
        required = where == "path" or (
            param.default is UNSET and not param.optional and not param.many
        )
        if where == "path" and schema.get("type") == "string":
            schema["minLength"] = 1  # an empty segment matches no route
        default = _json_value(param.default)
        if default is not UNSET and default is not None:
            schema["default"] = default
        parameter: dict[str, Any] = {"name": param.key, "in": where, "required": required}
        if param.many:
            parameter["style"] = "form"
            parameter["explode"] = True
        parameter["schema"] = schema
        return parameter

    def _text_schema(self, tp: object) -> JsonSchema:
        schema = self.registry.schema(tp)
        if "$ref" in schema and len(schema) == 1:
            # A parameter's enum is short and clearer inline than behind a reference.
            name = schema["$ref"].rsplit("/", 1)[1]
            return dict(self.registry.components[name])
        return schema

    def _request_body(self, body: ParamPlan) -> dict[str, Any]:
        required = body.default is UNSET and not body.optional
        if body.raw_body:
            content: dict[str, Any] = {"application/octet-stream": {"schema": {}}}
        else:
            schema = self.registry.schema(strip_optional(body.annotation))
            content = {"application/json": {"schema": schema}}
        return {"required": required, "content": content}

    # -- responses --------------------------------------------------------------------------

    def _plain_responses(self, route: RoutePlan) -> dict[str, Any]:
        returns = _return_annotation(route.handler)
        code = str(route.status or 200)
        ok = {"description": HTTPStatus(route.status or 200).phrase}
        if returns is None:
            return {code: ok}
        responses: dict[str, Any] = {}
        if is_optional(returns) or returns is type(None):
            phrase = HTTPStatus(route.status or 204).phrase
            responses[str(route.status or 204)] = {
                "description": f"{phrase} (the handler returned None)."
            }
            returns = strip_optional(returns)
            if returns is type(None):
                return responses
        if returns is str:
            content: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}
        elif returns is bytes:
            content = {"application/octet-stream": {"schema": {}}}
        elif isinstance(returns, type) and issubclass(returns, Response):
            return {code: ok, **responses}
        else:
            try:
                content = {"application/json": {"schema": self.registry.schema(returns)}}
            except UnsupportedType:
                # The return annotation is for the type checker; not describing it is no error.
                return {code: ok, **responses}
        return {code: {**ok, "content": content}, **responses}

    def _stream_response(self, route: RoutePlan) -> dict[str, Any]:
        self.has_streams = True
        item: JsonSchema = _ref("SseEvent")
        contract = route.events
        if contract is not None:
            item = {**item, "oneOf": [self._event_branch(n, t) for n, t in contract.types.items()]}
            names = ", ".join(f"`{name}`" for name in contract.types)
            description = f"An event stream of {names} events."
        else:
            description = "An event stream (its events are not declared)."
        media: dict[str, Any] = {"itemSchema": item}
        return {"description": description, "content": {"text/event-stream": media}}

    def _event_branch(self, name: str, tp: object) -> JsonSchema:
        mixed = text_and_json(tp)
        if tp is str:
            data: JsonSchema = {"type": "string"}
        elif mixed is not None:
            # Either a text as is ("[DONE]") or JSON of the other members.
            text: JsonSchema = {"type": "string"}
            if mixed.texts is not None:
                text["enum"] = sorted(mixed.texts)
            json_data: JsonSchema = {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": self.registry.schema(mixed.json_type),
            }
            data = {"anyOf": [json_data, text]}
        else:
            data = {
                "contentMediaType": "application/json",
                "contentSchema": self.registry.schema(tp),
            }
        branch: JsonSchema = {
            "title": name,
            "properties": {"event": {"const": name}, "data": data},
        }
        if name != MESSAGE:
            branch["required"] = ["event"]
        else:
            branch["description"] = "Events sent without a name (EventSource's `message`)."
        return branch

    def _error_statuses(
        self, route: RoutePlan, parameters: Sequence[Mapping[str, Any]], body: ParamPlan | None
    ) -> set[int]:
        statuses = set()
        if parameters or body is not None:
            statuses.add(400)
        if route.guards:
            statuses.update((401, 403))
        if route.template.param_names:
            statuses.add(404)
        if body is not None:
            statuses.update((408, 413))
            if not body.raw_body:
                statuses.add(415)
        if route.kind == "sse":
            statuses.add(503)
        return statuses

    def _own_error(self, route: RoutePlan, status: int, said: object) -> dict[str, Any]:
        """A status the handler answers itself: its description and the usual error body, or
        the body of the type it gave."""
        if isinstance(said, str):
            self.error_schema_used = True
            schema: JsonSchema = _ref("HttpError")
            description = said
        else:
            try:
                schema = self.registry.schema(said)
            except UnsupportedType as exc:
                raise ConfigurationError(
                    f"{route.call_plan.qualname}: responses={{{status}: ...}}: {exc}"
                ) from None
            description = HTTPStatus(status).phrase
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    def _security(self, route: RoutePlan) -> dict[str, list[str]]:
        requirement: dict[str, list[str]] = {}
        for guard in route.guards:
            scheme = getattr(guard, "security_scheme", None)
            if scheme is None:
                continue
            if scheme not in self.options.security_schemes:
                if scheme not in _KNOWN_SCHEMES:
                    known = ", ".join([*self.options.security_schemes, *_KNOWN_SCHEMES])
                    raise ConfigurationError(
                        f"{type(guard).__name__}.security_scheme is {scheme!r}, which is not a "
                        f"scheme of OpenAPISettings.security_schemes (known: {known}); add it "
                        f"there, e.g. {{{scheme!r}: {{'type': 'apiKey', 'in': 'cookie', "
                        "'name': 'sid'}}"
                    )
                self.implied_schemes[scheme] = _KNOWN_SCHEMES[scheme]
            requirement[scheme] = []
        return requirement

    def _stream_details(self, route: RoutePlan) -> dict[str, Any]:
        options = dict(route.sse_options)
        keepalive = options.get("keepalive", self.streams.keepalive)
        lifetime = options.get("max_lifetime", self.streams.max_lifetime)
        return {
            "keepaliveSeconds": keepalive,
            "maxLifetimeSeconds": lifetime,
            "bufferSize": options.get("buffer_size", self.streams.buffer_size),
            "bufferBytes": options.get("buffer_bytes", self.streams.buffer_bytes),
            "resumable": any(
                param.source == "header" and param.key == "last-event-id"
                for param in route.call_plan.params
            ),
        }


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


def _doc_parts(func: object) -> tuple[str | None, str | None]:
    doc = inspect.getdoc(func)
    if not doc:
        return None, None
    summary, _, rest = doc.partition("\n\n")
    return " ".join(summary.split()), (rest.strip() or None)


def _return_annotation(func: Any) -> Any:
    try:
        hints = typing.get_type_hints(inspect.unwrap(func))
    except Exception:  # the analyser has read these hints already; the return one may not
        return None
    return hints.get("return")


def _json_value(value: object) -> object:
    """``value`` as a JSON default, or `UNSET` when it has none worth stating."""
    if value is UNSET:
        return UNSET
    plain = value.value if isinstance(value, enum.Enum) else value
    if isinstance(plain, float) and not math.isfinite(plain):
        return UNSET
    if plain is None or isinstance(plain, str | int | float | bool):
        return plain
    return UNSET
