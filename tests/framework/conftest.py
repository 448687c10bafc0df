"""Fixtures for the framework tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from .fakes import FakeRequest, MakeRequest


@pytest.fixture
def make_request() -> MakeRequest:
    """Build a FakeRequest; ``headers`` keys are lower-cased as the real Request does.

    A request with a ``body`` says it is JSON (``content-type: application/json``) unless
    ``headers`` give a content type: JSON bodies need one.
    """

    def make(
        *,
        path: Mapping[str, str] | None = None,
        query: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> FakeRequest:
        lowered = {key.lower(): value for key, value in (headers or {}).items()}
        if body:
            lowered.setdefault("content-type", "application/json")
        return FakeRequest(dict(path or {}), list(query), lowered, raw_body=body)

    return make
