"""``serving/_upstream.py`` is still upstream's code, except where it says otherwise.

Each copied function is compared with the installed Hypercorn's: every run of differing lines
must contain one of ours marked ``# trio-dwex:``, once lint annotations and indentation are set
aside. Upstream changing a line we copied (a new release, or a patch in the pinned series)
fails here, with the diff to carry over; so does an unmarked change of ours.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from typing import Any

import hypercorn.protocol
import hypercorn.trio.run
import hypercorn.trio.tcp_server
import pytest

from trio_dwex.serving import _upstream

MARK = "# trio-dwex:"
LINT_ANNOTATION = re.compile(r"\s+# (noqa: [A-Z0-9, ]+|type: ignore\[[a-z-, ]+\])$")

COPIES: list[tuple[Callable[..., Any], Callable[..., Any]]] = [
    (hypercorn.trio.run.worker_serve, _upstream.worker_serve),
    (hypercorn.trio.tcp_server.TCPServer.run, _upstream.TCPServer.run),
    (hypercorn.protocol.ProtocolWrapper.__init__, _upstream.ProtocolWrapper.__init__),
    (hypercorn.protocol.ProtocolWrapper.handle, _upstream.ProtocolWrapper.handle),
]


def source_lines(function: Callable[..., Any]) -> list[str]:
    """The function's lines without lint annotations, and without their indentation: a block
    of upstream's that ours nests one level deeper (under a marked ``else:``) is still
    upstream's code."""
    return [
        LINT_ANNOTATION.sub("", line).strip() for line in inspect.getsource(function).splitlines()
    ]


def unmarked_changes(upstream: list[str], ours: list[str]) -> list[list[str]]:
    """The runs of differing lines (as ``difflib`` groups them) without a marked line of ours."""
    matcher = difflib.SequenceMatcher(a=upstream, b=ours, autojunk=False)
    return [
        upstream[i1:i2] + ours[j1:j2]
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal" and not any(MARK in line for line in ours[j1:j2])
    ]


@pytest.mark.parametrize(("upstream", "ours"), COPIES, ids=lambda f: f.__qualname__)
def test_the_copy_differs_from_upstream_only_where_marked(
    upstream: Callable[..., Any], ours: Callable[..., Any]
) -> None:
    theirs, mine = source_lines(upstream), source_lines(ours)
    diff = "\n".join(difflib.unified_diff(theirs, mine, "upstream", "ours", lineterm=""))
    assert not unmarked_changes(theirs, mine), (
        f"{ours.__module__}.{ours.__qualname__} no longer matches hypercorn's "
        f"{upstream.__module__}.{upstream.__qualname__}; carry upstream's change over, or mark "
        f"ours with {MARK!r}:\n{diff}"
    )


def test_an_unmarked_change_is_caught() -> None:
    upstream = ["a = 1", "b = 2", "c = 3"]
    assert unmarked_changes(upstream, ["a = 1", "b = 5  # trio-dwex: why", "c = 3"]) == []
    assert unmarked_changes(upstream, ["a = 1", "b = 5", "c = 3"]) == [["b = 2", "b = 5"]]
    assert unmarked_changes(upstream, ["a = 1", "c = 3"]) == [["b = 2"]]
    assert unmarked_changes(upstream, ["a = 1", "b = 2", "c = 3", "d = 4"]) == [["d = 4"]]
