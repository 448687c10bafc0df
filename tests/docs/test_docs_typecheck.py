"""Every page's Python blocks pass ``mypy --strict``, as users who copy them will run it.

``test_docs.py`` runs the blocks; this checks their types. Each page becomes one module (its
blocks concatenated in order, as ``test_docs.py`` runs them in one namespace), padded with
blank lines so that mypy's line numbers are the page's. One mypy run checks every page, with
the project's configuration (``[tool.mypy]`` in ``pyproject.toml``), from the repository root
so that ``examples`` and ``src`` import as they do for the typecheck session. Errors in the
modules a page imports are not reported here (``--follow-imports=silent``): the typecheck
session covers those.

mypy is in the ``test`` extra. Its cache lives in pytest's cache directory, so a second run
rechecks only the pages.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.docs.test_docs import page_id, pages, parse_blocks, python_blocks

ROOT = Path(__file__).resolve().parents[2]

#: Seconds the mypy run may take; a cold cache takes a few on a quiet machine.
MYPY_TIMEOUT = 120.0

#: One line of mypy's report: ``path:line: severity: message``.
_REPORT = re.compile(r"^(?P<path>.+?\.py):(?P<line>\d+): (?P<severity>error|note): (?P<text>.*)$")


def module_source(path: Path) -> str:
    """The page's Python blocks as one module, each block on the lines it has on the page."""
    name = f"docs/{page_id(path)}"
    lines: list[str] = []
    for block in python_blocks(parse_blocks(path.read_text(encoding="utf-8"), name), name):
        lines.extend([""] * (block.line - 1 - len(lines)))
        lines.extend(block.code.splitlines())
    return "\n".join(lines) + "\n" if lines else ""


def module_name(path: Path) -> str:
    """A module name for the page (``docs/guards-and-interceptors.md``: ``docs_guards_...``)."""
    return "docs_" + re.sub(r"\W", "_", page_id(path).removesuffix(".md"))


@dataclass
class Report:
    """What one mypy run said about the pages."""

    #: mypy's lines about each page (``docs/x.md:12: error: ...``), by page id.
    by_page: dict[str, list[str]] = field(default_factory=dict)
    #: Set if the run failed without saying why in lines about the pages.
    failure: str | None = None


def cache_dir(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache: pytest.Cache | None = getattr(config, "cache", None)  # absent: -p no:cacheprovider
    if cache is not None:
        return cache.mkdir("mypy-docs")
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture(scope="module")
def report(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Report:
    """Write each page's module and run mypy once on all of them."""
    directory = tmp_path_factory.mktemp("docs-typecheck")
    modules: dict[str, str] = {}
    result = Report()
    for page in pages():
        try:
            source = module_source(page)
        except ValueError as exc:  # test_docs.py reports it too; don't hide it here
            result.by_page[page_id(page)] = [str(exc)]
            continue
        if source:
            name = module_name(page)
            (directory / f"{name}.py").write_text(source, encoding="utf-8")
            modules[name] = page_id(page)
    if not modules:
        result.failure = "no page has a python block"
        return result
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(cache_dir(pytestconfig, tmp_path_factory)),
        "--follow-imports=silent",
        "--no-color-output",
        "--no-error-summary",
        "--hide-error-context",
        *(str(directory / f"{name}.py") for name in sorted(modules)),
    ]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=MYPY_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        result.failure = f"mypy took more than {MYPY_TIMEOUT:.0f}s"
        return result
    unexplained: list[str] = []
    errors = 0
    for line in done.stdout.splitlines():
        match = _REPORT.match(line)
        about = modules.get(Path(match["path"]).stem) if match else None
        if match is None or about is None:
            unexplained.append(line)
            continue
        errors += match["severity"] == "error"
        result.by_page.setdefault(about, []).append(
            f"docs/{about}:{match['line']}: {match['severity']}: {match['text']}"
        )
    # mypy exits with 1 if and only if it found errors, with 2 if it could not check.
    if unexplained or done.returncode != (1 if errors else 0):
        output = "\n".join([*unexplained, done.stderr]).strip()
        result.failure = f"mypy exited with {done.returncode}: {output or '(no output)'}"
        if "No module named mypy" in done.stderr:
            result.failure += "\nmypy is in the test extra: pip install -e '.[test]'"
    return result


def page_ids() -> Iterator[str]:
    for page in pages():
        yield page_id(page)


@pytest.mark.parametrize("page", list(page_ids()))
def test_page_type_checks(page: str, report: Report) -> None:
    assert report.failure is None, report.failure
    problems = report.by_page.get(page, [])
    assert not problems, f"mypy --strict on docs/{page}'s python blocks:\n" + "\n".join(problems)
