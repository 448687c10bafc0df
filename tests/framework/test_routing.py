"""The pure router: static dict first, templates in order, 404 and 405 with Allow."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trio_dwex._errors import ConfigurationError, MethodNotAllowedException, NotFoundException
from trio_dwex.framework import Router


@dataclass(frozen=True)
class R:
    method: str
    path: str
    name: str = "Ctl.handler"


def test_static_and_templated_routes() -> None:
    active = R("GET", "/jobs/active")
    one = R("GET", "/jobs/:jobId")
    progress = R("GET", "/jobs/progress/{jobId}")
    router = Router([one, active, progress])
    assert router.match("GET", "/jobs/active") == (active, {})  # static wins over the template
    assert router.match("GET", "/jobs/42") == (one, {"jobId": "42"})
    assert router.match("get", "/jobs/progress/a%20b/") == (progress, {"jobId": "a b"})
    assert router.match("GET", "/jobs/active/") == (active, {})


def test_templates_match_in_declaration_order() -> None:
    first = R("GET", "/files/{name}", "A.first")
    second = R("GET", "/{area}/readme", "A.second")
    router = Router([first, second])
    assert router.match("GET", "/files/readme")[0] is first


def test_unknown_path_is_404_like_nestjs() -> None:
    router = Router([R("GET", "/jobs")])
    with pytest.raises(NotFoundException) as info:
        router.match("GET", "/nope")
    assert info.value.status == 404
    assert info.value.message == "Cannot GET /nope"


def test_known_path_wrong_method_is_405_with_sorted_allow() -> None:
    router = Router(
        [
            R("POST", "/jobs/{id}"),
            R("GET", "/jobs/{id}"),
            R("DELETE", "/jobs/{jobId}"),
            R("PUT", "/jobs/active"),
        ]
    )
    with pytest.raises(MethodNotAllowedException) as info:
        router.match("PATCH", "/jobs/active")
    assert info.value.status == 405
    assert info.value.headers == {"Allow": "DELETE, GET, POST, PUT"}
    # A template route with the right method beats a static route with the wrong one.
    assert router.match("POST", "/jobs/active")[1] == {"id": "active"}
    with pytest.raises(MethodNotAllowedException) as info:
        router.match("HEAD", "/jobs/1")
    assert info.value.headers["Allow"] == "DELETE, GET, POST"


def test_duplicate_routes_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        Router([R("GET", "/jobs/{id}", "A.one"), R("GET", "/jobs/:jobId", "B.two")])
    assert str(info.value).startswith("B.two and A.one both handle GET /jobs/{jobId}")
    with pytest.raises(ConfigurationError, match="both handle GET /jobs"):
        Router([R("GET", "/jobs/", "A.one"), R("GET", "jobs", "B.two")])
    Router([R("GET", "/jobs/{id}"), R("POST", "/jobs/{id}")])  # different methods are fine


def test_bad_template_names_the_route() -> None:
    with pytest.raises(ConfigurationError, match=r"route Ctl.handler: .*unbalanced braces"):
        Router([R("GET", "/jobs/{id")])


def test_encoded_static_paths() -> None:
    cafe = R("GET", "/café")
    router = Router([cafe])
    assert router.match("GET", b"/caf%C3%A9".decode("utf-8"))[0] is cafe
    with pytest.raises(NotFoundException):
        router.match("GET", "/a%2Fb")
