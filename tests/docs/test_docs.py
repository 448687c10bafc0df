"""Every page of ``docs/`` is executable: its Python code blocks run, top to bottom, as a test.

Documentation that is never run goes stale without anyone noticing: an argument is renamed, an
import moves, and the page keeps teaching the old API. So the convention, shared by everyone
who writes a page, is:

* Every ```` ```python ```` block of a page runs, in order, in **one namespace per page**, as if
  the page were one module named ``docs_example``. A later block may use what an earlier one
  defined, and nothing leaks from one page to another.
* The page's blocks, as that one module, pass ``mypy --strict``, since users copy them
  into type-checked code (``tests/docs/test_docs_typecheck.py``).
* ``__name__`` is ``"docs_example"``, so ``if __name__ == "__main__":`` blocks are skipped:
  that is how a page shows ``trio.run(serve, app)`` without serving forever.
* A page that needs a live server starts one itself, in a block that calls
  ``trio.run(main)`` with ``async with serve_app(app) as url:`` inside (this test is sync, so
  ``trio.run`` is allowed). Intervals in the examples are short, so a page runs in seconds.
* Every block in another language is **run, checked, or tagged ``no-run`` with a reason**
  (:func:`test_every_block_is_run_checked_or_says_why_not`):

  - run: ``sh`` blocks of nothing but ``curl`` commands, and ``js`` blocks that open an
    ``EventSource``, run against the guide app (``examples/guide.py``) in
    ``tests/docs/test_live_blocks.py``, with real curl and Chromium (:mod:`tests.docs.runnable`
    selects them);
  - checked: an ``http`` block parses as an HTTP request or response head; a ``text`` block is
    an SSE wire sample that :class:`~trio_dwex.wire._decoder.SseDecoder` decodes to at least one
    event; ``json`` and ``toml`` blocks load;
  - not runnable: the fence says so after the language, with the reason, as in
    ```` ```sh no-run installs packages on the reader's machine ````. Renderers use only the
    first word of the info string, so the tag does not show. A ``python`` block cannot be
    tagged: it always runs (guard a server that runs forever with ``__main__`` instead).

  A fence without a language, or with one not listed in :data:`SHOWN_ONLY`, fails the test: no
  Python block can slip through unexecuted by a typo in its tag.
* Every page is linked from ``docs/index.md``, and every relative link between pages resolves.

One test per page, named after the page. A failing block is reported with the page and the
line its code starts on, and the traceback points at lines of the Markdown file itself.
"""

from __future__ import annotations

import json
import re
import sys
import time
import tomllib
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import h11
import pytest

from tests.docs.runnable import runner_of
from trio_dwex.wire._decoder import SseDecoder

DOCS = Path(__file__).resolve().parents[2] / "docs"

#: Fence tags of blocks that are executed.
EXECUTED = frozenset({"python", "py", "python3"})

#: Fence tags of blocks in other languages: each is run by another test, checked here, or tagged
#: ``no-run``. Anything else is refused (see the module docstring).
SHOWN_ONLY = frozenset(
    {
        "js",
        "javascript",
        "ts",
        "typescript",
        "tsx",
        "jsx",
        "html",
        "sh",
        "bash",
        "shell",
        "console",
        "text",
        "http",
        "json",
        "toml",
        "ini",
        "yaml",
        "nginx",
        "caddy",
        "dockerfile",
        "diff",
        "markdown",
        "md",
    }
)

#: The word after the language that marks a block as not runnable; the rest of the line says why.
NO_RUN = "no-run"

#: The namespace's module name: not ``"__main__"``, so ``if __name__ == "__main__":`` is skipped.
MODULE_NAME = "docs_example"

#: Seconds a page may take. Pages are meant to run in a few; this catches a forgotten long sleep
#: while leaving room for a machine that is busy running other tests.
PAGE_BUDGET = 30.0

#: A fence line. A backtick fence's info string has no backtick (CommonMark), so a line that
#: opens with a code span like ```` ```sh ```` is prose.
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}(?![^`]*`)|~{3,})(?P<info>.*)$")
_CODE_SPAN = re.compile(r"(`+).*?\1")
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block of a page."""

    #: The first word of the fence's info string, lower case ("" if none).
    language: str
    #: The block's content.
    code: str
    #: The 1-based line of the page on which the code starts (the line after the fence).
    line: int
    #: ``None`` unless the fence says ``no-run``; then the reason it gives ("" if none).
    no_run: str | None = None


def parse_blocks(text: str, name: str) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order (CommonMark fences, not indented code).

    Raises:
        ValueError: a fence is never closed, which would silently swallow the rest of the page.
    """
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening["fence"]
        info = opening["info"].strip()
        words = info.split(maxsplit=2)
        language = words[0].lower() if words else ""
        no_run = None
        if len(words) > 1 and words[1] == NO_RUN:
            no_run = words[2] if len(words) > 2 else ""
        body: list[str] = []
        start = index + 1
        index += 1
        while index < len(lines):
            closing = _FENCE.match(lines[index])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(lines[index])
            index += 1
        else:
            raise ValueError(f"{name}:{start}: a code fence {fence!r} is never closed")
        blocks.append(Block(language, "\n".join(body) + "\n", start + 1, no_run))
        index += 1
    return blocks


def python_blocks(blocks: list[Block], name: str) -> list[Block]:
    """The blocks to execute; fails on a block whose language is missing or unknown."""
    for block in blocks:
        if block.language not in EXECUTED | SHOWN_ONLY:
            what = f"language {block.language!r}" if block.language else "no language"
            raise ValueError(
                f"{name}:{block.line - 1}: a code block with {what}; tag it ```python to run it, "
                f"or with one of {sorted(SHOWN_ONLY)} to show it only"
            )
    return [block for block in blocks if block.language in EXECUTED]


class DocBlockError(AssertionError):
    """A page's Python block failed; the message names the page and the block's first line."""


def compile_blocks(blocks: list[Block], filename: str) -> list[tuple[Block, types.CodeType]]:
    """Compile every block before running any, so a typo late in a page fails at once.

    Each block is padded with blank lines so that line numbers in tracebacks are the page's.
    """
    compiled = []
    for block in blocks:
        padded = "\n" * (block.line - 1) + block.code
        try:
            compiled.append((block, compile(padded, filename, "exec")))
        except SyntaxError as exc:
            raise DocBlockError(
                f"{filename}: the python block starting at line {block.line} does not compile: "
                f"{exc.msg} (line {exc.lineno})"
            ) from exc
    return compiled


def run_page(path: Path, *, display_name: str | None = None) -> None:
    """Run the Python blocks of the page at ``path`` in one fresh module namespace.

    The namespace is a real module, registered in ``sys.modules`` while the page runs, because
    code on a page behaves like code in a file: ``typing.get_type_hints`` (used for constructor
    injection), dataclasses and pickling look a class's module up by ``__module__``.
    """
    name = display_name or path.name
    blocks = python_blocks(parse_blocks(path.read_text(encoding="utf-8"), name), name)
    compiled = compile_blocks(blocks, name)
    module = types.ModuleType(MODULE_NAME)
    module.__file__ = str(path)
    previous = sys.modules.get(MODULE_NAME)
    sys.modules[MODULE_NAME] = module
    try:
        for block, code in compiled:
            try:
                exec(code, module.__dict__)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                details = "".join(traceback.format_exception(exc))
                raise DocBlockError(
                    f"{name}: the python block starting at line {block.line} raised "
                    f"{type(exc).__name__}: {exc}\n\n{details}"
                ) from exc
    finally:
        if previous is None:
            sys.modules.pop(MODULE_NAME, None)
        else:
            sys.modules[MODULE_NAME] = previous


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def page_id(path: Path) -> str:
    return path.relative_to(DOCS).as_posix()


def prose(text: str) -> str:
    """The page without its code blocks and code spans, where ``x[i](y)`` is not a link."""
    lines: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        marker = _FENCE.match(line)
        if fence is None and marker is not None:
            fence = marker["fence"]
        elif fence is not None:
            if marker is not None and marker["fence"].startswith(fence) and not marker["info"]:
                fence = None
        else:
            lines.append(_CODE_SPAN.sub("", line))
    return "\n".join(lines)


def relative_links(text: str) -> Iterator[str]:
    """Targets of the page's Markdown links to other files, without their ``#anchor``."""
    for match in _LINK.finditer(prose(text)):
        target = match["target"]
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        yield target.partition("#")[0]


def check_http(code: str) -> None:
    """An ``http`` block: one request or response head (start line and headers), as h11 reads it."""
    head = code.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n"
    if head.startswith(b"HTTP/"):
        connection = h11.Connection(h11.CLIENT)
        connection.send(h11.Request(method="GET", target="/", headers=[("Host", "docs")]))
        expected: type[h11.Request | h11.Response] = h11.Response
    else:
        connection = h11.Connection(h11.SERVER)
        expected = h11.Request
    connection.receive_data(head)
    event = connection.next_event()
    if not isinstance(event, expected):
        raise ValueError(f"not an HTTP {expected.__name__.lower()} head: {event}")


#: The fields of an SSE event; a ``text`` sample's lines are these, comments or blank.
SSE_FIELDS = ("data", "event", "id", "retry")


def check_sse_sample(code: str) -> None:
    """A ``text`` block: SSE on the wire, which our decoder reads as one event or more.

    A sample's last event need not show the blank line that ends it.
    """
    for number, line in enumerate(code.splitlines(), start=1):
        if line and not line.startswith(":") and line.partition(":")[0] not in SSE_FIELDS:
            raise ValueError(
                f"line {number} of the sample is not an SSE field, comment or blank: {line!r}"
            )
    if not SseDecoder().feed(code.encode() + b"\n"):
        raise ValueError("the SSE sample decodes to no event")


#: How a block in each of these languages is checked, if no test runs it and it is not no-run.
CHECKS: dict[str, Callable[[str], object]] = {
    "http": check_http,
    "text": check_sse_sample,
    "json": json.loads,
    "toml": tomllib.loads,
}


def unaccounted(blocks: list[Block], name: str) -> list[str]:
    """What is wrong with each block that is neither run, checked nor tagged no-run with a reason.

    Python blocks run (see :func:`run_page`); the rest are run by :func:`runner_of`'s test,
    checked by :data:`CHECKS` (which runs the check here) or tagged ``no-run`` with a reason.
    """
    problems: list[str] = []
    for block in blocks:
        where = f"{name}:{block.line - 1}: a {block.language or 'untagged'} block"
        if block.language in EXECUTED:
            if block.no_run is not None:
                problems.append(f"{where} always runs; guard what must not with __main__")
        elif block.no_run is not None:
            if not block.no_run:
                problems.append(f"{where} says no-run without a reason: ```sh no-run <why>")
        elif runner_of(block.language, block.code) is None:
            check = CHECKS.get(block.language)
            if check is None:
                problems.append(
                    f"{where} that no test runs; make it runnable (see tests/docs/runnable.py) "
                    f"or tag it ```{block.language} {NO_RUN} <why it cannot run here>"
                )
                continue
            try:
                check(block.code)
            except Exception as exc:
                problems.append(f"{where} fails its check: {type(exc).__name__}: {exc}")
    return problems


# -- the documentation ----------------------------------------------------------------------


#: Environment variables a page reads for a server this test starts for it: a page that names
#: one gets the server, really run, instead of a block skipped behind ``__main__``.
REDIS_URL_VARIABLE = "TRIO_DWEX_REDIS_URL"
REDIS_CLUSTER_VARIABLE = "TRIO_DWEX_REDIS_CLUSTER"


@pytest.fixture
def page_services(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start the servers the page names (a redis-server, a Redis Cluster), stopped by PID."""
    from tests.broadcast.conftest import RedisClusterNodes, RedisServer

    text = page.read_text(encoding="utf-8")
    with ExitStack() as stack:
        if REDIS_URL_VARIABLE in text:
            (tmp_path / "redis").mkdir()
            server = RedisServer(tmp_path / "redis")
            server.start()
            stack.callback(server.stop)
            monkeypatch.setenv(REDIS_URL_VARIABLE, server.url)
        if REDIS_CLUSTER_VARIABLE in text:
            (tmp_path / "cluster").mkdir()
            cluster = RedisClusterNodes(tmp_path / "cluster")
            stack.callback(cluster.stop)
            cluster.start()
            monkeypatch.setenv(REDIS_CLUSTER_VARIABLE, f"127.0.0.1:{cluster.ports[0]}")
        yield


@pytest.mark.parametrize("page", pages(), ids=page_id)
@pytest.mark.usefixtures("page_services")
def test_page_runs(page: Path) -> None:
    started = time.monotonic()
    run_page(page, display_name=f"docs/{page_id(page)}")
    elapsed = time.monotonic() - started
    assert elapsed < PAGE_BUDGET, (
        f"docs/{page_id(page)} took {elapsed:.1f}s to run; shorten its intervals"
    )


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_every_block_is_run_checked_or_says_why_not(page: Path) -> None:
    name = f"docs/{page_id(page)}"
    problems = unaccounted(parse_blocks(page.read_text(encoding="utf-8"), name), name)
    assert not problems, "\n".join(problems)


def test_every_page_is_linked_from_the_index() -> None:
    index = DOCS / "index.md"
    assert index.is_file(), "docs/index.md is missing"
    linked = {
        (DOCS / target).resolve() for target in relative_links(index.read_text(encoding="utf-8"))
    }
    orphans = [page_id(page) for page in pages() if page != index and page.resolve() not in linked]
    assert not orphans, f"pages not linked from docs/index.md: {orphans}"


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_relative_links_resolve(page: Path) -> None:
    broken = [
        target
        for target in relative_links(page.read_text(encoding="utf-8"))
        if target and not (page.parent / target).exists()
    ]
    assert not broken, f"docs/{page_id(page)} links to missing files: {broken}"


# -- the runner itself ----------------------------------------------------------------------


def write_page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_runner_shares_one_namespace_and_skips_main(tmp_path: Path) -> None:
    page = write_page(
        tmp_path,
        "# T\n\n```python\nx = 1\n```\n\n```js\nthrow 1\n```\n\n```python\n"
        "y = x + 1\nif __name__ == '__main__':\n    raise SystemExit('ran main')\n"
        "assert __name__ == 'docs_example'\n"
        "import docs_example\ndocs_example.seen = y\n```\n",
    )
    run_page(page)
    assert MODULE_NAME not in sys.modules


def test_runner_names_the_page_and_line_of_a_failing_block(tmp_path: Path) -> None:
    page = write_page(tmp_path, "# T\n\n```python\nok = 1\n```\n\n```python\n\n1 / 0\n```\n")
    with pytest.raises(DocBlockError) as info:
        run_page(page)
    message = str(info.value)
    assert message.startswith("page.md: the python block starting at line 8 raised")
    assert "ZeroDivisionError" in message
    # The traceback points at the page's own line of the failing statement.
    assert 'File "page.md", line 9' in message


def test_runner_compiles_every_block_before_running_any(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    page = write_page(
        tmp_path,
        f"```python\nopen({str(marker)!r}, 'w').close()\n```\n\n```python\ndef broken(:\n```\n",
    )
    with pytest.raises(DocBlockError, match=r"line 6 does not compile"):
        run_page(page)
    assert not marker.exists()


@pytest.mark.parametrize("fence", ["```\nx = 1\n```\n", "```pycon\n>>> 1\n```\n"])
def test_runner_refuses_untagged_and_unknown_blocks(tmp_path: Path, fence: str) -> None:
    page = write_page(tmp_path, "# T\n\n" + fence)
    with pytest.raises(ValueError, match=r"page\.md:3: a code block with"):
        run_page(page)


def test_runner_refuses_an_unclosed_fence(tmp_path: Path) -> None:
    page = write_page(tmp_path, "```python\nx = 1\n")
    with pytest.raises(ValueError, match="never closed"):
        run_page(page)


def test_links_in_code_are_not_links() -> None:
    text = (
        "See [events](events.md#rules) and [site](https://x.example).\n"
        "`channel[T](16)` is code.\n```python\nx = f[int](3)\n```\n[faq](faq.md)\n"
    )
    assert list(relative_links(text)) == ["events.md", "faq.md"]


def test_parser_keeps_longer_fences_and_tildes_intact() -> None:
    text = "````markdown\n```python\nx\n```\n````\n~~~python\ny = 2\n~~~\n"
    blocks = parse_blocks(text, "t.md")
    assert [(b.language, b.line) for b in blocks] == [("markdown", 2), ("python", 7)]
    assert blocks[0].code == "```python\nx\n```\n"
    assert blocks[1].code == "y = 2\n"


def test_parser_reads_a_line_opening_with_a_code_span_as_prose() -> None:
    text = "```` ```sh no-run why ```` is a tag.\n```sh no-run why\nx\n```\n"
    assert [(b.line, b.no_run) for b in parse_blocks(text, "t.md")] == [(3, "why")]


def test_parser_reads_a_no_run_tag_and_its_reason() -> None:
    text = "```sh no-run needs a  Redis\nx\n```\n```sh no-run\ny\n```\n```sh\nz\n```\n"
    assert [b.no_run for b in parse_blocks(text, "t.md")] == ["needs a  Redis", "", None]


@pytest.mark.parametrize(
    ("fence", "problem"),
    [
        ("```sh\npip install x\n```\n", "that no test runs"),
        ("```sh no-run\npip install x\n```\n", "without a reason"),
        ("```python no-run slow\nx = 1\n```\n", "always runs"),
        ("```yaml\na: 1\n```\n", "that no test runs"),
        ("```json\n{1}\n```\n", "fails its check: JSONDecodeError"),
        ("```toml\n[a\n```\n", "fails its check: TOMLDecodeError"),
        ("```text\nhello world\n```\n", "not an SSE field"),
        ("```text\n: only a comment\n```\n", "decodes to no event"),
        ("```http\nGET /\n```\n", "fails its check"),
        ("```http\nHTTP/1.1 two hundred\n```\n", "fails its check"),
    ],
)
def test_enforcement_refuses(fence: str, problem: str) -> None:
    [message] = unaccounted(parse_blocks("# T\n\n" + fence, "t.md"), "t.md")
    assert message.startswith("t.md:3: a "), message
    assert problem in message


def test_enforcement_accepts() -> None:
    text = (
        "```sh no-run installs packages\npip install x\n```\n"
        "```sh\ncurl -N localhost:9929/events/countdown\n```\n"
        "```js\nnew EventSource('/events')\n```\n"
        "```http\nGET /events HTTP/1.1\nHost: x\n```\n"
        "```http\nHTTP/1.1 200\ncontent-type: text/event-stream\n```\n"
        "```text\n: hi\nid: 1\ndata: x\n```\n"
        '```json\n{"a": 1}\n```\n'
        "```toml\n[a]\nb = 1\n```\n"
        "```python\nx = 1\n```\n"
    )
    assert unaccounted(parse_blocks(text, "t.md"), "t.md") == []
