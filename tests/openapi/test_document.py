"""The OpenAPI 3.2 document: what each kind of route, parameter, body, response, guard and
stream becomes, that it is valid 3.2, and how it and the docs page are served."""

from __future__ import annotations

import copy
import dataclasses
import enum
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import httpx
import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV32SpecValidator
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from trio_dwex import (
    Body,
    ConfigurationError,
    Controller,
    DwexApp,
    ExecutionContext,
    Get,
    Headers,
    Module,
    OpenAPISettings,
    Param,
    Post,
    Put,
    Query,
    Response,
    Settings,
    Sse,
    SseEvent,
    UseGuards,
    create_app,
)
from trio_dwex.testing._server import serve_app


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


@dataclasses.dataclass
class Job:
    """A job to run."""

    name: str
    priority: int = 1


class Progress(TypedDict):
    percent: int


class Done(TypedDict):
    ok: bool


class TokenGuard:
    security_scheme = "bearer"

    def can_activate(self, context: ExecutionContext) -> bool:
        return bool(context.request.headers.get("authorization") == "Bearer t")


class PlainGuard:
    def can_activate(self, context: ExecutionContext) -> bool:
        return True


@Controller("jobs")
class JobsController:
    """Jobs and their progress."""

    @Get()
    def search(
        self,
        level: Annotated[Level, Query()] = Level.LOW,
        tags: Annotated[list[str], Query("tag")] = [],  # noqa: B006 - never mutated
        limit: Annotated[int | None, Query()] = None,
        verbose: Annotated[bool, Query()] = False,
        request_id: Annotated[str | None, Headers("x-request-id")] = None,
        auth: Annotated[str | None, Headers("authorization")] = None,
    ) -> list[Job]:
        """Find jobs.

        Every filter is optional.
        """
        return []

    @Post()
    @UseGuards(TokenGuard, PlainGuard)
    def create(self, job: Annotated[Job, Body()]) -> dict[str, str]:
        return {"id": "1"}

    @Put("{jobId}/blob")
    def upload(
        self, job_id: Annotated[str, Param("jobId")], blob: Annotated[bytes, Body()]
    ) -> None:
        return None

    @Get("{jobId}/text")
    def text(self) -> str:
        return "text"

    @Get("maybe")
    def maybe(self, job: Annotated[Job | None, Body()] = None) -> Job | None:
        return None

    @Get("custom")
    def custom(self) -> Response:
        return Response(b"")

    @Sse("{jobId}/progress", events={"progress": Progress, "done": Done}, keepalive=5)
    async def progress(
        self,
        job_id: Annotated[int, Param("jobId")],
        last_id: Annotated[str | None, Headers("last-event-id")] = None,
    ) -> AsyncIterator[SseEvent]:
        yield SseEvent(data={"percent": 100}, event="progress")

    @Sse("log", events={"message": str})
    async def log(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="a line")

    @Sse("raw")
    async def raw(self) -> AsyncIterator[SseEvent]:
        yield SseEvent(data="x")


@Module(controllers=[JobsController])
class JobsModule:
    pass


OPTIONS = OpenAPISettings(
    title="Jobs",
    version="2.1.0",
    description="Runs jobs.",
    servers=("https://jobs.example", {"url": "/", "description": "here"}),
    security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
)


@pytest.fixture(scope="module")
def app() -> DwexApp:
    return create_app(JobsModule, settings=Settings(openapi=OPTIONS))


@pytest.fixture(scope="module")
def document(app: DwexApp) -> dict[str, Any]:
    assert app.openapi is not None
    return app.openapi


def test_the_document_is_valid_openapi_3_2(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.2.0"
    validate(document, cls=OpenAPIV32SpecValidator)


def test_the_validator_does_check_3_2_documents(document: dict[str, Any]) -> None:
    """So that the test above can fail: a broken itemSchema is refused."""
    broken = copy.deepcopy(document)
    media = broken["paths"]["/jobs/{jobId}/progress"]["get"]["responses"]["200"]["content"]
    media["text/event-stream"]["itemSchema"] = "not a schema"
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV32SpecValidator)


def test_info_servers_tags_and_security_schemes(document: dict[str, Any]) -> None:
    assert document["info"] == {"title": "Jobs", "version": "2.1.0", "description": "Runs jobs."}
    assert document["servers"] == [
        {"url": "https://jobs.example"},
        {"url": "/", "description": "here"},
    ]
    assert document["tags"] == [{"name": "Jobs", "description": "Jobs and their progress."}]
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }


def test_query_and_header_parameters(document: dict[str, Any]) -> None:
    operation = document["paths"]["/jobs"]["get"]
    assert operation["operationId"] == "JobsController_search"
    assert operation["summary"] == "Find jobs."
    assert operation["description"] == "Every filter is optional."
    by_name = {p["name"]: p for p in operation["parameters"]}
    assert "authorization" not in by_name  # OpenAPI ignores it; security schemes say it
    assert by_name["level"] == {
        "name": "level",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["low", "high"], "default": "low"},
    }
    assert by_name["tag"] == {
        "name": "tag",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"type": "string"}},
    }
    assert by_name["limit"]["schema"] == {"type": "integer"}
    assert by_name["verbose"]["schema"] == {"type": "boolean", "default": False}
    assert by_name["x-request-id"]["in"] == "header"
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}
    assert set(operation["responses"]) == {"200", "400"}


def test_a_json_body_guards_and_their_errors(document: dict[str, Any]) -> None:
    operation = document["paths"]["/jobs"]["post"]
    assert operation["requestBody"] == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}},
    }
    assert document["components"]["schemas"]["Job"] == {
        "type": "object",
        "description": "A job to run.",
        "properties": {"name": {"type": "string"}, "priority": {"type": "integer", "default": 1}},
        "required": ["name"],
        "additionalProperties": False,
    }
    assert set(operation["responses"]) == {"200", "400", "401", "403", "408", "413", "415"}
    assert operation["responses"]["415"] == {"$ref": "#/components/responses/UnsupportedMediaType"}
    assert operation["security"] == [{"bearer": []}]
    assert operation["x-dwex-guards"] == ["TokenGuard", "PlainGuard"]
    error = document["components"]["responses"]["Unauthorized"]
    assert error["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HttpError"
    }


def test_a_raw_body_a_path_parameter_and_no_content(document: dict[str, Any]) -> None:
    operation = document["paths"]["/jobs/{jobId}/blob"]["put"]
    assert operation["requestBody"]["content"] == {"application/octet-stream": {"schema": {}}}
    assert operation["parameters"] == [
        {
            "name": "jobId",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
    ]
    assert operation["responses"]["204"]["description"].startswith("No Content")
    assert "200" not in operation["responses"]
    assert set(operation["responses"]) == {"204", "400", "404", "408", "413"}  # bytes: no 415


def test_an_unread_path_parameter_and_a_text_response(document: dict[str, Any]) -> None:
    operation = document["paths"]["/jobs/{jobId}/text"]["get"]
    assert operation["parameters"][0]["name"] == "jobId"
    assert operation["responses"]["200"]["content"] == {
        "text/plain": {"schema": {"type": "string"}}
    }


def test_optional_body_and_result(document: dict[str, Any]) -> None:
    operation = document["paths"]["/jobs/maybe"]["get"]
    assert operation["requestBody"]["required"] is False
    assert set(operation["responses"]) >= {"200", "204"}
    custom = document["paths"]["/jobs/custom"]["get"]
    assert custom["responses"] == {"200": {"description": "OK"}}


def test_a_stream_is_a_union_of_its_named_events(document: dict[str, Any]) -> None:
    operation = document["paths"]["/jobs/{jobId}/progress"]["get"]
    ok = operation["responses"]["200"]
    assert ok["description"] == "An event stream of `progress`, `done` events."
    item = ok["content"]["text/event-stream"]["itemSchema"]
    assert item["$ref"] == "#/components/schemas/SseEvent"
    assert item["oneOf"] == [
        {
            "title": "progress",
            "properties": {
                "event": {"const": "progress"},
                "data": {
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/Progress"},
                },
            },
            "required": ["event"],
        },
        {
            "title": "done",
            "properties": {
                "event": {"const": "done"},
                "data": {
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/Done"},
                },
            },
            "required": ["event"],
        },
    ]
    event = document["components"]["schemas"]["SseEvent"]
    assert event["required"] == ["data"]
    assert event["properties"]["retry"] == {"type": "integer", "minimum": 0}
    assert event["properties"]["id"] == {"type": "string"}
    assert set(operation["responses"]) == {"200", "400", "404", "503"}
    assert operation["parameters"][0]["schema"] == {"type": "integer"}
    assert operation["x-dwex-stream"] == {
        "keepaliveSeconds": 5,
        "maxLifetimeSeconds": None,
        "bufferSize": 256,
        "bufferBytes": 256 * 1024,
        "resumable": True,
    }
    unavailable = document["components"]["responses"]["ServiceUnavailable"]
    assert "Retry-After" in unavailable["headers"]


def test_unnamed_text_events_and_undeclared_streams(document: dict[str, Any]) -> None:
    log = document["paths"]["/jobs/log"]["get"]["responses"]["200"]["content"]
    (branch,) = log["text/event-stream"]["itemSchema"]["oneOf"]
    assert branch["title"] == "message"
    assert "required" not in branch  # the unnamed event has no `event` field
    assert branch["properties"]["data"] == {"type": "string"}  # text, sent as is
    raw = document["paths"]["/jobs/raw"]["get"]["responses"]["200"]["content"]
    assert raw["text/event-stream"]["itemSchema"] == {"$ref": "#/components/schemas/SseEvent"}


def test_operation_ids_are_unique() -> None:
    @Controller("a")
    class Twice:
        @Get("one")
        @Get("two")
        def both(self) -> dict[str, int]:
            return {}

    @Module(controllers=[Twice])
    class Mod:
        pass

    document = create_app(Mod).openapi
    assert document is not None
    ids = [document["paths"][p]["get"]["operationId"] for p in ("/a/one", "/a/two")]
    assert sorted(ids) == ["Twice_both", "Twice_both_get"]


def test_bearer_and_basic_need_no_declaration() -> None:
    document = create_app(JobsModule).openapi  # no security_schemes given
    assert document is not None
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    assert document["paths"]["/jobs"]["post"]["security"] == [{"bearer": []}]


def test_a_guard_naming_an_unknown_scheme_fails_at_create_app() -> None:
    class SessionGuard:
        security_scheme = "session"

        def can_activate(self, context: ExecutionContext) -> bool:
            return True

    @Controller("s")
    class Sessions:
        @Get()
        @UseGuards(SessionGuard)
        def get(self) -> None:
            return None

    @Module(controllers=[Sessions])
    class Mod:
        pass

    with pytest.raises(ConfigurationError, match=r"SessionGuard\.security_scheme is 'session'"):
        create_app(Mod)
    session = {"session": {"type": "apiKey", "in": "cookie", "name": "sid"}}
    app = create_app(Mod, settings=Settings(openapi=OpenAPISettings(security_schemes=session)))
    assert app.openapi is not None
    assert app.openapi["components"]["securitySchemes"] == session
    assert app.openapi["paths"]["/s"]["get"]["security"] == [{"session": []}]


def test_a_route_on_the_document_path_fails_at_create_app() -> None:
    @Controller()
    class Clash:
        @Get("docs")
        def docs(self) -> str:
            return "mine"

    @Module(controllers=[Clash])
    class Mod:
        pass

    with pytest.raises(ConfigurationError, match=r"Clash\.docs is served at /docs"):
        create_app(Mod)
    moved = create_app(Mod, settings=Settings(openapi=OpenAPISettings(docs_path="/api/docs")))
    assert moved.openapi is not None


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"path": "openapi.json"}, "OpenAPISettings.path"),
        ({"docs_path": "/"}, "OpenAPISettings.docs_path"),
        ({"path": "/x", "docs_path": "/x"}, "must differ"),
        ({"servers": "https://a"}, "OpenAPISettings.servers"),
        ({"security_schemes": {"b": {"scheme": "bearer"}}}, "security_schemes"),
        ({"title": 3}, "OpenAPISettings.title"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        OpenAPISettings(**options)


# -- serving -----------------------------------------------------------------------------------


async def test_the_document_and_the_page_are_served(app: DwexApp) -> None:
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == app.openapi
        head = await client.head("/openapi.json")
        assert head.status_code == 200
        assert head.content == b""
        post = await client.post("/openapi.json")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        page = await client.get("/docs")
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "default-src 'none'" in policy
        assert 'data-openapi="/openapi.json"' in page.text
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources
        assert all(source.startswith("/") for source in sources)  # no CDN
        for source in sources:
            asset = await client.get(source)
            assert asset.status_code == 200, source
        script = await client.get("/docs/docs.js")
        assert script.headers["content-type"] == "text/javascript; charset=utf-8"
        assert "http://" not in script.text
        assert "https://" not in script.text


async def test_switched_off_or_moved() -> None:
    off = create_app(JobsModule, settings=Settings(openapi=None))
    assert off.openapi is None
    moved = create_app(
        JobsModule,
        settings=Settings(
            openapi=dataclasses.replace(OPTIONS, path="/api/spec.json", docs_path=None)
        ),
    )
    async with serve_app(off) as off_url, serve_app(moved) as moved_url:
        async with httpx.AsyncClient() as client:
            assert (await client.get(off_url + "/openapi.json")).status_code == 404
            assert (await client.get(off_url + "/docs")).status_code == 404
            assert (await client.get(moved_url + "/api/spec.json")).status_code == 200
            assert (await client.get(moved_url + "/openapi.json")).status_code == 404
            assert (await client.get(moved_url + "/docs")).status_code == 404


async def test_an_app_mounted_under_a_prefix_serves_its_pages_below_it() -> None:
    # The document names the prefix as its server, so requests from the page go below it; the
    # page loads everything from below it, not the enclosing app's pages at the root.
    inner = create_app(JobsModule)
    outer = create_app(JobsModule, mounts={"/v1": inner})
    given = create_app(JobsModule, settings=Settings(openapi=OPTIONS))
    described = create_app(JobsModule, mounts={"/v2": given})
    async with (
        serve_app(outer) as url,
        serve_app(described) as described_url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        assert "servers" not in (await client.get("/openapi.json")).json()
        document = (await client.get("/v1/openapi.json")).json()
        assert document["servers"] == [{"url": "/v1"}]
        assert {key: value for key, value in document.items() if key != "servers"} == inner.openapi
        page = (await client.get("/v1/docs")).text
        assert 'data-openapi="/v1/openapi.json"' in page
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert sources == ["/v1/docs/docs.css", "/v1/docs/docs.js", "/v1/openapi.json"]
        for source in sources:
            assert (await client.get(source)).status_code == 200, source
        # Servers the app names itself are its own to keep.
        kept = (await client.get(described_url + "/v2/openapi.json")).json()["servers"]
    assert given.openapi is not None
    assert kept == given.openapi["servers"]


def test_pages_below_prefixes_are_built_for_their_own_paths_only_and_kept_boundedly() -> None:
    # A prefix can come from a client's path (a mount with a parameter): a request for an API
    # path builds nothing, and only so many prefixes' pages are kept.
    pages = create_app(JobsModule)._pages
    assert pages is not None
    for n in range(40):
        assert pages.answer("GET", "/jobs", f"/t{n}") is None
    assert pages._below == {}
    for n in range(40):
        page = pages.answer("GET", "/docs", f"/t{n}/")
        assert page is not None
        assert f'data-openapi="/t{n}/openapi.json"'.encode() in bytes(page.body)
    assert len(pages._below) == 16
