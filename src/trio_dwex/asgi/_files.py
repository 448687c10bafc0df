"""Files: `FileResponse` sends one in chunks; `StaticFiles` serves a directory safely.

Both answer conditional requests (``If-None-Match``, ``If-Modified-Since``) with 304 and
``HEAD`` without a body, and neither reads a file whole: a large file costs one chunk of memory.
"""

from __future__ import annotations

import mimetypes
import os
import stat as stat_module
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import trio

from .._errors import HttpException, MethodNotAllowedException, NotFoundException
from ..wire._headers import HeadersInput, encode_headers
from ..wire._paths import below_root
from ._responses import SetsCookies, error_response
from ._types import Receive, Scope, Send, scope_header

__all__ = ["FileResponse", "StaticFiles"]

#: Bytes read and sent at a time.
CHUNK_SIZE = 64 * 1024

# Not every system's mime table knows these, and a browser refuses a module script or a
# stylesheet sent with the wrong type.
_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".ico": "image/vnd.microsoft.icon",
}


def guess_media_type(path: str | os.PathLike[str]) -> str:
    """The content type for a file name; text types say ``charset=utf-8``."""
    suffix = Path(path).suffix.lower()
    media_type = _TYPES.get(suffix) or mimetypes.guess_type(Path(path).name)[0]
    if media_type is None:
        return "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/json", "image/svg+xml"):
        return f"{media_type}; charset=utf-8"
    return media_type


class FileResponse(SetsCookies):
    """The file at ``path``, sent in chunks, with ``ETag`` and ``Last-Modified``.

    A client that already has this version (``If-None-Match``, or ``If-Modified-Since`` no
    older than the file) gets ``304 Not Modified``. A file that does not exist (or is not a
    regular file) when the response is sent is a 404. ``filename`` makes it a download
    (``Content-Disposition: attachment``) under that name.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        media_type: str | None = None,
        filename: str | None = None,
        status: int = 200,
        headers: HeadersInput | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.status = status
        self.headers = encode_headers(headers)
        self.headers.append((b"content-type", (media_type or guess_media_type(path)).encode()))
        if filename is not None:
            disposition = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
            self.headers.append((b"content-disposition", disposition.encode("ascii")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            file = await trio.open_file(self.path, "rb")
        except OSError:
            await error_response(NotFoundException("no such file")).__call__(scope, receive, send)
            return
        async with file:
            info = await trio.to_thread.run_sync(os.fstat, file.fileno())
            if not stat_module.S_ISREG(info.st_mode):
                await error_response(NotFoundException("no such file"))(scope, receive, send)
                return
            validators = _validators(info)
            if _not_modified(scope, validators, info.st_mtime):
                await send({"type": "http.response.start", "status": 304, "headers": validators})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            headers = [*self.headers, *validators, (b"content-length", str(info.st_size).encode())]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            left = info.st_size  # the size when opened: a file growing meanwhile is cut there
            while left > 0:
                chunk = await file.read(min(CHUNK_SIZE, left))
                if not chunk:
                    break  # truncated meanwhile: the client sees a short body and knows
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
            if left:
                raise OSError(f"{self.path} shrank while it was being sent")


def _validators(info: os.stat_result) -> list[tuple[bytes, bytes]]:
    etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
    modified = format_datetime(datetime.fromtimestamp(info.st_mtime, UTC), usegmt=True)
    return [(b"etag", etag.encode()), (b"last-modified", modified.encode())]


def _not_modified(scope: Scope, validators: list[tuple[bytes, bytes]], mtime: float) -> bool:
    """Whether a GET or HEAD may be answered 304 (RFC 9110 13.2.2: If-None-Match first)."""
    if scope.get("method") not in ("GET", "HEAD"):
        return False
    etag = validators[0][1].decode()
    if_none_match = scope_header(scope, b"if-none-match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    if_modified_since = scope_header(scope, b"if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False  # a date that does not parse is ignored, as the RFC says
    if since.tzinfo is None:
        return False
    return int(mtime) <= since.timestamp()


class StaticFiles:
    """An ASGI app serving the files under ``directory``; mount it under a prefix.

    Only files inside ``directory`` are ever served: the path is decoded once (as the server
    did), then a segment that is ``..``, or holds a backslash, a NUL or a drive colon, or a
    file whose real path (symlinks resolved) is outside the directory, is a 404, the same
    404 as a missing file, so that probing learns nothing. ``index`` is the file served for a
    directory (``/`` included); a directory without one is a 404. Only ``GET`` and ``HEAD``.
    """

    def __init__(self, directory: str | os.PathLike[str], *, index: str | None = "index.html"):
        root = Path(directory).resolve()
        if not root.is_dir():
            raise ValueError(f"StaticFiles needs an existing directory, got {directory!r}")
        self.directory = root
        self.index = index

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _no_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            response = await self.respond(scope)
        except HttpException as exc:
            await error_response(exc)(scope, receive, send)
            return
        await response(scope, receive, send)

    async def respond(self, scope: Scope) -> FileResponse:
        """The response for a request, or an `HttpException` (404, 405)."""
        if scope["method"] not in ("GET", "HEAD"):
            raise MethodNotAllowedException(
                "static files are read with GET or HEAD", headers={"Allow": "GET, HEAD"}
            )
        path = below_root(str(scope["path"]), str(scope.get("root_path", "")))
        found = await trio.to_thread.run_sync(self._find, path)
        if found is None:
            raise NotFoundException(f"no file at {scope['path']}")
        real, named = found
        # The type follows the name asked for, as with any web server, not a symlink's target.
        return FileResponse(real, media_type=guess_media_type(named))

    def _find(self, path: str) -> tuple[Path, Path] | None:
        """The real path of the file to serve for ``path``, and the name it was asked by."""
        segments = [segment for segment in path.split("/") if segment not in ("", ".")]
        for segment in segments:
            # ".." climbs out; "\\" and ":" are separators or drives elsewhere; a leading dot
            # is a hidden file (.env, .git), never meant to be served.
            if segment.startswith(".") or "\\" in segment or "\x00" in segment or ":" in segment:
                return None
        candidate = self.directory.joinpath(*segments)
        real = self._inside(candidate)
        if real is not None and real.is_dir():
            if self.index is None:
                return None
            candidate = candidate / self.index
            real = self._inside(candidate)
        if real is None:
            return None
        return (real, candidate) if real.is_file() else None

    def _inside(self, path: Path) -> Path | None:
        """``path`` with symlinks resolved, if it exists and is inside the directory."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            return None
        if real != self.directory and self.directory not in real.parents:
            return None  # a symlink that leads out of the directory
        return real


async def _no_lifespan(receive: Receive, send: Send) -> None:
    """Answer the lifespan protocol for an app with nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
