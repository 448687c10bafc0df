"""Serving the OpenAPI document and the interactive docs page, from this server only.

The page is ours (``docs_ui/``: one HTML file, one script, one style sheet, no third-party
code and nothing fetched from a CDN), so it works offline and behind a strict
Content-Security-Policy, and it can show a stream's events as they arrive. Every response is
built once, when the app is created, and sent as is.
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
        self._responses: dict[str, Response] = {}
        if options.path is not None:
            body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
            self._add(router, options.path, Response(body.encode(), media_type="application/json"))
        if options.docs_path is not None:
            page = _read("index.html").format(
                assets=html.escape(options.docs_path),
                openapi=html.escape(options.path or ""),
            )
            headers = {"Content-Security-Policy": _PAGE_POLICY, "X-Content-Type-Options": "nosniff"}
            self._add(
                router,
                options.docs_path,
                Response(page, headers=headers, media_type="text/html; charset=utf-8"),
            )
            for name, media_type in _ASSET_TYPES.items():
                self._add(
                    router,
                    f"{options.docs_path}/{name}",
                    Response(_read(name), headers=headers, media_type=media_type),
                )

    def _add(self, router: Router[RoutePlan], path: str, response: Response) -> None:
        try:
            route, _ = router.match("GET", path)
        except MethodNotAllowedException:
            clash = "a route of the app"
        except HttpException:
            self._responses[path] = response
            return
        else:
            clash = route.name
        raise ConfigurationError(
            f"{clash} is served at {path}, where the app serves its OpenAPI document or docs "
            "page; move one, e.g. Settings(openapi=OpenAPISettings(path=..., docs_path=...))"
        )

    def answer(self, method: str, path: str) -> Response | None:
        """The built-in response for ``path``, or None when the path is not one of ours.

        Raises:
            MethodNotAllowedException: the path is ours but the method is not GET or HEAD.
        """
        response = self._responses.get(path)
        if response is None or method in ("GET", "HEAD"):
            return response
        raise MethodNotAllowedException(
            f"Cannot {clip(method)} {path}; allowed: GET, HEAD", headers={"Allow": "GET, HEAD"}
        )


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("docs_ui", name).read_text("utf-8")
