"""The ``mailbox`` command's entry point, with a short way in for the harness hooks.

A harness runs ``mailbox hook prompt`` on every prompt, so its start-up is paid again and
again. When the command line is ``[--root R] [--agent A] [--json] hook NAME`` followed by
nothing but the options ``mailbox setup`` writes (``--agent``, ``--root``, ``--json``,
``--budget`` for session-start, ``--timeout`` for wait), the hook is answered here without
loading the command-line framework: the same :func:`agentmailbox.hooks.answer` that
``mailbox hook NAME`` calls, printed the same way. Anything else (``--help``, an unknown
option, a value that does not parse) goes to :func:`agentmailbox.cli.main` unchanged,
which says what is wrong as it always does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

__all__ = ["main", "run"]

_VALUES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--agent": ("agent", str), "--root": ("root", str),
    "--budget": ("budget", int), "--timeout": ("timeout", float)}
"""The options taking a value: the keyword each becomes, and its parse."""
_BEFORE = ("--agent", "--root")
"""The options (besides the flag ``--json``) that may come before ``hook``."""
_AFTER = {"session-start": ("--agent", "--root", "--budget"), "wait": ("--agent", "--root",
                                                                       "--timeout")}
"""The options each hook takes after its name (the others: ``--agent``, ``--root``)."""
INTERRUPTED = 130
"""Ctrl-C's exit code, as the full command's (``agentmailbox.cli._base.EXIT_INTERRUPTED``)."""


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    call = hook_call(args)
    if call is None:
        from .cli import main as full

        return full(args)
    try:
        return _answer(*call)
    except KeyboardInterrupt:  # Ctrl-C in `hook wait`: no traceback, the full command's answer
        sys.stderr.write("\n")
        return INTERRUPTED


def hook_call(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """``(hook, options)`` when ``args`` is a plain hook call (see the module's doc), else
    None."""
    options: dict[str, Any] = {}
    rest = _options(args, _BEFORE, options)
    if rest is None or len(rest) < 2 or rest[0] != "hook":
        return None
    from .hooks import HOOKS

    name = rest[1]
    if name not in HOOKS or _options(rest[2:], _AFTER.get(name, _BEFORE), options) != []:
        return None
    return name, options


def _options(args: list[str], allowed: tuple[str, ...], into: dict[str, Any]
             ) -> list[str] | None:
    """Read the leading options of ``args`` (``--json``, and those in ``allowed`` with a
    value, as ``--x V`` or ``--x=V``) into ``into``; the words left from the first one that
    is not an option. None when an option is not allowed or its value does not parse."""
    at = 0
    while at < len(args) and args[at].startswith("-"):
        word, eq, value = args[at].partition("=")
        if args[at] == "--json":
            at += 1
            continue
        if word not in allowed or (not eq and at + 1 == len(args)):
            return None
        key, parse = _VALUES[word]
        try:
            into[key] = parse(value if eq else args[at + 1])
        except ValueError:
            return None
        at += 1 if eq else 2
    return args[at:]


def _answer(name: str, options: dict[str, Any]) -> int:
    """Answer hook ``name`` as ``mailbox hook NAME`` does: stdout, stderr, exit code."""
    from .hooks import answer
    from .mailbox import Mailbox

    root = options.pop("root", None)  # None: $MAILBOX_ROOT, else the nearest root
    agent = options.pop("agent", None)
    got = answer(name, agent, lambda: Mailbox.open(root), root=root, **options)
    try:  # as click.echo: a stream closed at start (None) is skipped, a reader gone ends it
        if got.stdout and sys.stdout is not None:
            sys.stdout.write(got.stdout + "\n")
            sys.stdout.flush()
        if got.stderr and sys.stderr is not None:
            sys.stderr.write(got.stderr + "\n")
            sys.stderr.flush()
    except BrokenPipeError:
        pass
    return got.code
