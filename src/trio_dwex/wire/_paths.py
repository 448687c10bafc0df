"""Route path templates: ``/jobs/progress/:jobId`` or ``/jobs/progress/{jobId}``.

Both spellings are accepted, even mixed in one template, because users arrive from NestJS
(``:id``) and from Starlette or FastAPI (``{id}``). A parameter is always one whole, non-empty
path segment, so matching is a segment-by-segment comparison with no regex and no ambiguity.

Templates are checked when they are compiled, at app startup, so a typo fails there and not on
the first request. Sans-IO: this module imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes

__all__ = ["PathTemplate", "below_root", "below_root_raw", "compile_path", "join_paths"]


def _normalise(path: str) -> str:
    # Leading slash added, repeated slashes collapsed, trailing slash dropped (except for "/").
    return "/" + "/".join(segment for segment in path.split("/") if segment)


def join_paths(*parts: str) -> str:
    """Join a controller prefix and a route path into one normalised path.

    ``join_paths("events", "updates") == "/events/updates"``, ``join_paths("", "") == "/"``:
    users write prefixes with or without slashes, and the result must not depend on it.
    """
    return _normalise("/".join(parts))


def below_root(path: str, root_path: str) -> str:
    """``path`` as seen by an app mounted at ``root_path``: ``below_root("/api/jobs", "/api")``
    is ``"/jobs"``.

    A server or framework that mounts an app under a prefix passes the whole path and the
    prefix as ``root_path`` (ASGI's rule: Starlette's ``Mount``, uvicorn's ``--root-path``, our
    own mounts); some pass the path with the prefix already taken off (Hypercorn's
    ``root_path`` setting). So a path that does not start with ``root_path`` at a segment
    boundary is returned as it is.
    """
    root = root_path.rstrip("/")
    if not root or not path.startswith(root):
        return path
    rest = path[len(root) :]
    if not rest:
        return "/"
    return rest if rest[0] == "/" else path


def below_root_raw(raw_path: str, root_path: str) -> str:
    """`below_root` for a path as the client sent it (ASGI ``raw_path``, decoded as latin-1),
    where ``root_path`` is decoded: the prefix is found even where the client percent-encoded
    some of its characters, ``below_root_raw("/my%20api/jobs", "/my api")`` is ``"/jobs"``.

    The rest keeps its encoding, so that ``%2F`` stays inside a parameter. Call it only for a
    request whose decoded path is below ``root_path``.
    """
    root = root_path.rstrip("/")
    if not root or raw_path.startswith(root):
        return below_root(raw_path, root_path)
    # Compare decoded prefixes that end at a segment boundary, shortest first.
    stop = raw_path.find("/", 1)
    while True:
        end = len(raw_path) if stop == -1 else stop
        prefix = unquote_to_bytes(raw_path[:end].encode("latin-1")).decode("utf-8", "replace")
        if prefix == root:
            return raw_path[end:] or "/"
        if stop == -1 or len(prefix) >= len(root):
            return raw_path
        stop = raw_path.find("/", end + 1)


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """A compiled route template; build it with :func:`compile_path`.

    ``template`` is the normalised form, written with ``{name}``, and is what error messages
    and route listings show. ``param_names`` are in the order they appear.
    """

    template: str
    param_names: tuple[str, ...]
    # One entry per segment: (True, name) for a parameter, (False, text) for a literal.
    _segments: tuple[tuple[bool, str], ...] = field(repr=False, compare=False)

    @property
    def is_static(self) -> bool:
        """True when the template has no parameters, so a router can look it up in a dict."""
        return not self.param_names

    def match(self, path: str) -> dict[str, str] | None:
        """The parameters if ``path`` matches, else ``None``.

        ``path`` is the raw, still percent-encoded path (ASGI ``raw_path``, without the query).
        It is split into segments *before* decoding, so ``%2F`` inside a value stays part of
        that value instead of becoming a separator; each segment is then decoded with
        ``urllib.parse.unquote``. A trailing slash is ignored, as in the template.
        """
        if not path.startswith("/"):
            return None
        if self.is_static and path in (self.template, self.template + "/"):
            return {}
        raw = path[1:].split("/")
        if len(raw) > 1 and raw[-1] == "":
            raw.pop()
        if len(raw) != len(self._segments):
            return None
        params: dict[str, str] = {}
        for segment, (is_param, text) in zip(raw, self._segments, strict=True):
            if is_param:
                if not segment:
                    return None
                params[text] = unquote(segment)
            elif segment != text and unquote(segment) != text:
                return None
        return params


def compile_path(template: str) -> PathTemplate:
    """Compile ``template`` into a :class:`PathTemplate`.

    >>> compile_path("jobs/progress/:jobId/").template
    '/jobs/progress/{jobId}'
    >>> compile_path("/jobs/{id}").match("/jobs/a%20b")
    {'id': 'a b'}

    Raises ``ValueError`` naming the template for an empty parameter name, a name that is not a
    Python identifier (it becomes a handler argument), a name used twice, unbalanced braces, or
    braces that do not span a whole segment.
    """
    normalised = _normalise(template)
    segments: list[tuple[bool, str]] = []
    names: list[str] = []
    for segment in normalised.split("/")[1:]:
        name = _param_name(template, segment)
        if name is None:
            segments.append((False, segment))
            continue
        if name in names:
            raise ValueError(
                f"path template {template!r} uses the parameter name {name!r} twice; "
                "give each parameter a distinct name"
            )
        names.append(name)
        segments.append((True, name))
    shown = "/" + "/".join("{" + text + "}" if is_param else text for is_param, text in segments)
    return PathTemplate(shown, tuple(names), tuple(segments))


def _param_name(template: str, segment: str) -> str | None:
    if segment.startswith(":"):
        name = segment[1:]
    elif segment[:1] + segment[-1:] == "{}" and segment.count("{") == segment.count("}") == 1:
        name = segment[1:-1]
    elif "{" in segment or "}" in segment:
        problem = (
            "has unbalanced braces"
            if segment.count("{") != segment.count("}")
            else "has braces that do not span the whole segment"
        )
        raise ValueError(
            f"path template {template!r}: segment {segment!r} {problem}; a parameter is a "
            "whole segment, written {name} or :name"
        )
    else:
        return None
    if not name:
        raise ValueError(
            f"path template {template!r} has a parameter with an empty name in segment "
            f"{segment!r}; name it, as in ':id' or '{{id}}'"
        )
    if not name.isidentifier():
        raise ValueError(
            f"path template {template!r}: parameter name {name!r} is not a Python identifier "
            "(letters, digits and underscores, not starting with a digit); rename it"
        )
    return name
