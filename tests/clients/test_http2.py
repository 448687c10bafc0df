"""HTTP/2: the guide's streams over TLS (ALPN, as browsers use it) and over cleartext h2c.

HTTP/2 forbids connection-specific headers (RFC 9113, 8.2.2): a ``Connection: keep-alive``
that is fine on HTTP/1.1 makes a strict client or proxy reset the stream. Several streams
share one connection, so they are read here side by side.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import trio
import trustme

from tests.clients import tools  # noqa: F401  (sets GUIDE_TICK before the guide is imported)
from trio_dwex.testing import EventSource, MessageEvent, serve_app

from examples import guide  # isort: skip


async def read_guide_streams(client: httpx.AsyncClient) -> dict[str, list[MessageEvent]]:
    """The countdown and a notification, read at the same time on ``client``."""
    results: dict[str, list[MessageEvent]] = {}
    responses: dict[str, httpx.Response] = {}

    async def read(path: str, count: int) -> None:
        async with EventSource(path, client=client, max_events=count, timeout=10) as source:
            results[path] = [event async for event in source]
            assert source.response is not None
            responses[path] = source.response

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read, "/events/countdown", 11)
        nursery.start_soon(read, "/events/notifications", 1)
    for path, response in responses.items():
        assert response.http_version == "HTTP/2", path
        assert "connection" not in response.headers, (path, response.headers)
        assert "keep-alive" not in response.headers, (path, response.headers)
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache, no-transform"
    return results


def check_guide_streams(results: dict[str, list[MessageEvent]]) -> None:
    countdown = results["/events/countdown"]
    assert [e.type for e in countdown] == ["countdown"] * 10 + ["complete"]
    assert [e.json()["count"] for e in countdown[:10]] == list(range(10, 0, -1))
    assert [e.id for e in countdown[:10]] == [str(n) for n in range(1, 11)]
    (notification,) = results["/events/notifications"]
    assert (notification.type, notification.id, notification.retry) == (
        "notification",
        "msg-123",
        3000,
    )
    assert notification.json()["title"] == "New Message"


async def test_http2_over_tls_with_a_self_signed_certificate(tmp_path: Path) -> None:
    authority = trustme.CA()
    certificate = authority.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    trust = ssl.create_default_context()
    authority.configure_trust(trust)
    with trio.fail_after(30):
        async with serve_app(guide.app, certfile=str(certfile), keyfile=str(keyfile)) as url:
            assert url.startswith("https://127.0.0.1:")
            async with httpx.AsyncClient(base_url=url, http2=True, verify=trust) as client:
                results = await read_guide_streams(client)
                # The same server still speaks HTTP/1.1 to a client that asks for it, with
                # its keep-alive header.
                async with httpx.AsyncClient(base_url=url, verify=trust) as http1:
                    async with EventSource("/events/notifications", client=http1) as source:
                        await anext(source)
                        assert source.response is not None
                        assert source.response.http_version == "HTTP/1.1"
                        assert source.response.headers["connection"] == "keep-alive"
    check_guide_streams(results)


async def test_http2_cleartext_with_prior_knowledge() -> None:
    with trio.fail_after(30):
        async with serve_app(guide.app) as url:
            async with httpx.AsyncClient(base_url=url, http1=False, http2=True) as client:
                results = await read_guide_streams(client)
    check_guide_streams(results)
