"""Which non-Python blocks of ``docs/`` a test runs, and how a shell block splits into commands.

``test_docs.py`` asks :func:`runner_of` whether a block is run by a test elsewhere (and so needs
no ``no-run`` tag); ``test_live_blocks.py`` runs exactly the blocks these functions select, so
the two cannot disagree.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

#: Fence tags of shell blocks.
SHELL = frozenset({"sh", "bash", "shell", "console"})
#: Fence tags of JavaScript blocks.
JAVASCRIPT = frozenset({"js", "javascript"})
#: The test module that runs the blocks selected here.
LIVE_TEST = "tests/docs/test_live_blocks.py"
#: Shell control operators: a line with one is more than a plain command (pipes, lists, ...).
_OPERATORS = frozenset({"&", "&&", "|", "||", ";", ";;", "<", ">", ">>", "<<", "(", ")", "|&"})


@dataclass(frozen=True, slots=True)
class Command:
    """One command of a shell block."""

    #: The words, as the shell would pass them (quotes removed, comments dropped).
    argv: tuple[str, ...]
    #: Ended by ``&``: it runs in the background while the next commands run.
    background: bool
    #: The 1-based line of the page on which the command starts.
    line: int


def shell_commands(code: str, first_line: int) -> list[Command] | None:
    """The commands of a shell block, if every one is a plain ``curl`` command; else ``None``.

    A plain command is one line (continued with ``\\``), optionally sent to the background
    with a final ``&``: no pipes, lists, redirections or variable assignments.
    """
    commands: list[Command] = []
    pending = ""
    start = first_line
    for number, raw in enumerate(code.splitlines(), start=first_line):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1] + " "
            continue
        line, pending = pending + raw, ""
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        if not words:
            continue
        background = words[-1] == "&"
        if background:
            words.pop()
        if words[0] != "curl" or _OPERATORS.intersection(words):
            return None
        commands.append(Command(tuple(words), background, start))
    if pending or not commands:
        return None
    return commands


def runs_with_curl(language: str, code: str) -> bool:
    """A shell block of ``curl`` commands only: run against the guide app with real curl."""
    return language in SHELL and shell_commands(code, 1) is not None


def runs_in_chromium(language: str, code: str) -> bool:
    """A JavaScript block that opens an ``EventSource``: run in Chromium against the guide."""
    return language in JAVASCRIPT and "EventSource(" in code


def runner_of(language: str, code: str) -> str | None:
    """The test module that runs this block, or ``None`` if none does."""
    if runs_with_curl(language, code) or runs_in_chromium(language, code):
        return LIVE_TEST
    return None
