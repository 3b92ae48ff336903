"""Untrusted text in text output, shown one way.

Subjects, thread names, kinds, header values, handoff notes, bodies, journal fields and
file names met on disk are chosen by other agents (or by whoever planted a file). They
reach a terminal, or the boot brief a restarting agent reads first, only through
:func:`line` (a one-line field) or :func:`block` (a multi-line body):

- control characters (C0 with ESC, CR, LF and tab; DEL; C1), format characters (bidi
  overrides and isolates, zero-width characters, the byte-order mark), line and
  paragraph separators, lone surrogates, private-use and unassigned code points are
  written as visible escapes: ``\\x1b``, ``\\n``, ``\\u202e``, ``\\U000e0041``. No escape
  sequence reaches the terminal, and no newline starts a line the text did not own;
- a one-line field is cut at ``limit`` characters, ending with an ellipsis;
- a block keeps its line breaks and tabs, and every line starts with :data:`FENCE`,
  so it cannot forge the structure around it.

Backslashes are shown as they are: a literal ``\\x1b`` in a subject is harmless text.
JSON output does not go through here: JSON escapes control characters itself, and
keeps the text exact.
"""

from __future__ import annotations

import unicodedata

__all__ = ["ELLIPSIS", "FENCE", "LINE_LIMIT", "block", "line"]

LINE_LIMIT = 200
"""Longest one-line field shown, in characters (escapes count as what they show)."""
ELLIPSIS = "…"
FENCE = "| "
"""What every line of a rendered block starts with."""

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def line(value: object, limit: int | None = LINE_LIMIT) -> str:
    """``value`` as one line that is safe to print: escaped, and cut at ``limit``.

    Args:
        value: Any text (other values are shown as ``str(value)``).
        limit: The most characters shown, the ellipsis included; None for no cap
            (error messages, which must be whole).
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and (limit is None or len(text) <= limit):
        return text  # the common case: nothing to escape, nothing to cut
    return _cut(_pieces(text, keep=""), limit)


def block(value: str) -> str:
    """A multi-line text (a body) as fenced lines: breaks and tabs kept, the rest escaped.

    ``\\r\\n`` counts as a line break; a lone ``\\r`` is escaped. Empty text is no lines.
    """
    if not value:
        return ""
    lines = value.replace("\r\n", "\n").split("\n")
    return "\n".join(FENCE + "".join(_pieces(text, keep="\t")) for text in lines)


def _pieces(text: str, keep: str) -> list[str]:
    return [ch if ch.isprintable() or ch in keep or not _unsafe(ch) else _escape(ch)
            for ch in text]


def _unsafe(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp")


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _SHORT:
        return _SHORT[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _cut(pieces: list[str], limit: int | None) -> str:
    """Join ``pieces`` into at most ``limit`` characters, never splitting an escape."""
    shown = "".join(pieces)
    if limit is None or len(shown) <= limit:
        return shown
    room = max(limit - len(ELLIPSIS), 0)
    out: list[str] = []
    for piece in pieces:
        if len(piece) > room:
            break
        out.append(piece)
        room -= len(piece)
    return "".join(out) + ELLIPSIS
