"""Path templates: both syntaxes, normalisation, percent-decoding, and every error."""

from __future__ import annotations

import pytest

from trio_dwex.wire import compile_path, join_paths
from trio_dwex.wire._paths import below_root, below_root_raw


@pytest.mark.parametrize(
    "template", ["/jobs/progress/:jobId", "/jobs/progress/{jobId}", "jobs//progress/:jobId/"]
)
def test_both_syntaxes_compile_to_the_same_template(template: str) -> None:
    path = compile_path(template)
    assert path.template == "/jobs/progress/{jobId}"
    assert path.param_names == ("jobId",)
    assert not path.is_static
    assert path.match("/jobs/progress/42") == {"jobId": "42"}


def test_mixed_syntaxes_in_one_template() -> None:
    path = compile_path("/users/:userId/posts/{postId}")
    assert path.template == "/users/{userId}/posts/{postId}"
    assert path.param_names == ("userId", "postId")
    assert path.match("/users/u1/posts/p2") == {"userId": "u1", "postId": "p2"}


@pytest.mark.parametrize(
    ("template", "normalised"),
    [("", "/"), ("/", "/"), ("//", "/"), ("events", "/events"), ("/a//b///", "/a/b")],
)
def test_normalisation(template: str, normalised: str) -> None:
    path = compile_path(template)
    assert path.template == normalised
    assert path.is_static
    assert path.param_names == ()


def test_static_match() -> None:
    path = compile_path("/events/updates")
    assert path.match("/events/updates") == {}
    assert path.match("/events/updates/") == {}
    assert path.match("/events") is None
    assert path.match("/events/updates/x") is None
    assert path.match("/events/Updates") is None
    assert path.match("events/updates") is None


def test_root() -> None:
    root = compile_path("/")
    assert root.match("/") == {}
    assert root.match("/x") is None
    assert compile_path("/x").match("/") is None


def test_parameter_matches_one_segment_only() -> None:
    path = compile_path("/files/:name")
    assert path.match("/files/a/b") is None
    assert path.match("/files/") is None
    assert path.match("/files") is None
    assert path.match("/files//") is None
    assert path.match("/files/a/") == {"name": "a"}


def test_empty_segment_does_not_match_a_parameter_in_the_middle() -> None:
    assert compile_path("/a/{x}/b").match("/a//b") is None


def test_parameters_are_percent_decoded_after_splitting() -> None:
    path = compile_path("/files/{name}/{rest}")
    assert path.match("/files/a%20b/caf%C3%A9") == {"name": "a b", "rest": "café"}
    # %2F is a slash inside the value, not a separator.
    assert path.match("/files/a%2Fb/c") == {"name": "a/b", "rest": "c"}


def test_static_segments_match_their_percent_encoded_form() -> None:
    path = compile_path("/hello world/{x}")
    assert path.match("/hello%20world/1") == {"x": "1"}
    assert path.match("/hello world/1") == {"x": "1"}


def test_colon_inside_a_segment_is_literal() -> None:
    path = compile_path("/v1/things:batch")
    assert path.is_static
    assert path.match("/v1/things:batch") == {}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("/a/:id/b/{id}", "uses the parameter name 'id' twice"),
        ("/a/:", "empty name"),
        ("/a/{}", "empty name"),
        ("/a/{job-id}", "'job-id' is not a Python identifier"),
        ("/a/:1st", "'1st' is not a Python identifier"),
        ("/a/:{id}", "is not a Python identifier"),
        ("/a/{id", "unbalanced braces"),
        ("/a/id}", "unbalanced braces"),
        ("/a/{a/b}", "unbalanced braces"),
        ("/a/{{id}}", "do not span the whole segment"),
        ("/a/file-{id}.txt", "do not span the whole segment"),
        ("/a/{x}{y}", "do not span the whole segment"),
    ],
)
def test_errors_name_the_template_and_the_problem(template: str, message: str) -> None:
    with pytest.raises(ValueError, match="path template") as info:
        compile_path(template)
    assert repr(template) in str(info.value)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("parts", "joined"),
    [
        (("events", "updates"), "/events/updates"),
        (("", ""), "/"),
        ((), "/"),
        (("/events/", "/updates/"), "/events/updates"),
        (("events", ""), "/events"),
        (("", "updates"), "/updates"),
        (("api/v1", ":id"), "/api/v1/:id"),
    ],
)
def test_join_paths(parts: tuple[str, ...], joined: str) -> None:
    assert join_paths(*parts) == joined


def test_templates_are_values() -> None:
    assert compile_path("/a/:x") == compile_path("a/{x}/")
    assert "x" in repr(compile_path("/a/:x"))


@pytest.mark.parametrize(
    ("path", "root_path", "below"),
    [
        ("/api/jobs", "/api", "/jobs"),
        ("/api/jobs", "/api/", "/jobs"),
        ("/api", "/api", "/"),
        ("/api/", "/api", "/"),
        ("/jobs", "/api", "/jobs"),  # the server took the prefix off already
        ("/apiary/jobs", "/api", "/apiary/jobs"),  # not at a segment boundary
        ("/api/jobs", "", "/api/jobs"),
        ("/a/b/c", "/a/b", "/c"),
    ],
)
def test_below_root_is_the_path_an_app_mounted_there_routes(
    path: str, root_path: str, below: str
) -> None:
    assert below_root(path, root_path) == below


@pytest.mark.parametrize(
    ("raw_path", "root_path", "below"),
    [
        ("/api/jobs", "/api", "/jobs"),
        ("/my%20api/jobs", "/my api", "/jobs"),
        ("/caf%C3%A9/a%2Fb", "/caf\u00e9", "/a%2Fb"),  # the rest keeps its encoding
        ("/a/b%20c/d", "/a/b c", "/d"),  # an encoded character in a later segment
        ("/my%20api", "/my api", "/"),
        ("/my%20apiary/jobs", "/my api", "/my%20apiary/jobs"),  # not at a segment boundary
        ("/other/jobs", "/my api", "/other/jobs"),
        ("/jobs", "", "/jobs"),
    ],
)
def test_below_root_raw_finds_a_prefix_the_client_percent_encoded(
    raw_path: str, root_path: str, below: str
) -> None:
    assert below_root_raw(raw_path, root_path) == below
