"""Serving the OpenAPI document and the interactive docs page, from this server only.

The page is ours (``docs_ui/``: one HTML file, one script, one style sheet, no third-party
code and nothing fetched from a CDN), so it works offline and behind a strict
Content-Security-Policy, and it can show a stream's events as they arrive. Every response is
built once, when the app is created, and sent as is.

An app mounted under a prefix (its requests carry a ``root_path``) gets the same pages below
it, built for that prefix: the document names it as its server (unless the app configured
``servers``), so the page's requests go below it, and the page loads its script, style sheet
and document from below it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any, Final

from .._errors import ConfigurationError, HttpException, MethodNotAllowedException, clip
from ..framework._routing import RoutePlan, Router
from ._responses import Response
from ._settings import OpenAPISettings

__all__ = ["OpenAPIPages"]

# Scripts, styles and requests from this server only; no inline code, no frames, no forms
# posted elsewhere.
_PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Prefixes (``root_path`` values) whose pages are kept once built.
_MAX_PREFIXES: Final = 16
_ASSET_TYPES: Final[Mapping[str, str]] = {
    "docs.js": "text/javascript; charset=utf-8",
    "docs.css": "text/css; charset=utf-8",
}


class OpenAPIPages:
    """The built-in GET routes: the document at ``options.path``, the page at ``docs_path``.

    Raises `ConfigurationError` when one of their paths is also an app route's.
    """

    def __init__(
        self, document: Mapping[str, Any], options: OpenAPISettings, router: Router[RoutePlan]
    ) -> None:
        self._document = document
        self._options = options
        self._responses = self._build("")
        for path in self._responses:
            _check_free(router, path)
        # The same pages for each prefix the app was reached under, built on first use. A
        # prefix may come from a client's path (a mount with a parameter in it), so only so
        # many are kept; others are built per request.
        self._below: dict[str, dict[str, Response]] = {}

    def answer(self, method: str, path: str, root_path: str = "") -> Response | None:
        """The built-in response for ``path`` (below ``root_path``, where the app is mounted),
        or None when the path is not one of ours.

        Raises:
            MethodNotAllowedException: the path is ours but the method is not GET or HEAD.
        """
        if path not in self._responses:  # the same paths below every prefix
            return None
        if method in ("GET", "HEAD"):
            return self._for_root(root_path.rstrip("/"))[path]
        raise MethodNotAllowedException(
            f"Cannot {clip(method)} {path}; allowed: GET, HEAD", headers={"Allow": "GET, HEAD"}
        )

    def _for_root(self, root: str) -> dict[str, Response]:
        if not root:
            return self._responses
        responses = self._below.get(root)
        if responses is None:
            responses = self._build(root)
            if len(self._below) < _MAX_PREFIXES:
                self._below[root] = responses
        return responses

    def _build(self, root: str) -> dict[str, Response]:
        """Every built-in response, by its path, for an app mounted at ``root`` ("": none)."""
        options = self._options
        responses: dict[str, Response] = {}
        if options.path is not None:
            document = self._document
            if root and "servers" not in document:
                document = {**document, "servers": [{"url": root}]}
            body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
            responses[options.path] = Response(body.encode(), media_type="application/json")
        if options.docs_path is not None:
            page = _read("index.html").format(
                assets=html.escape(root + options.docs_path),
                openapi=html.escape(root + options.path if options.path is not None else ""),
            )
            headers = {"Content-Security-Policy": _PAGE_POLICY, "X-Content-Type-Options": "nosniff"}
            responses[options.docs_path] = Response(
                page, headers=headers, media_type="text/html; charset=utf-8"
            )
            for name, media_type in _ASSET_TYPES.items():
                responses[f"{options.docs_path}/{name}"] = Response(
                    _read(name), headers=headers, media_type=media_type
                )
        return responses


def _check_free(router: Router[RoutePlan], path: str) -> None:
    """Raise `ConfigurationError` if an app route is served at ``path``."""
    try:
        route, _ = router.match("GET", path)
    except MethodNotAllowedException:
        clash = "a route of the app"
    except HttpException:
        return
    else:
        clash = route.name
    raise ConfigurationError(
        f"{clash} is served at {path}, where the app serves its OpenAPI document or docs "
        "page; move one, e.g. Settings(openapi=OpenAPISettings(path=..., docs_path=...))"
    )


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("docs_ui", name).read_text("utf-8")
