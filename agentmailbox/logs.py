"""The one logging setup of the long-running commands: JSON lines on stderr.

Only the CLI daemons (``mailbox watch``) call :func:`daemon_logging`; the library
never configures logging. Library modules log through stdlib ``logging`` (silent
until someone configures it), and so does watchdog, whose inotify overflow warning
is the one record we must not lose. Both, and any structlog logger, come out of a
single stdlib handler as one JSON object per line::

    {"event": "done", "level": "info", "logger": "agentmailbox.watch",
     "timestamp": "2026-05-01T12:00:00.123456Z", "agent": "bob", "id": "...", "exit": 0}

structlog is imported inside the functions, not at the top: it costs more than the whole
of a short command (``mailbox inbox``), which imports this module but never logs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

import orjson

if TYPE_CHECKING:
    import structlog

__all__ = ["daemon_logging", "get_logger"]


def _shared() -> list[Any]:
    """The processors every record goes through, structlog's and stdlib's alike."""
    import structlog

    return [structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True)]


def _dumps(obj: Any, **kw: Any) -> str:
    # ProcessorFormatter's last processor must return str (structlog: stdlib.py).
    return orjson.dumps(obj, **kw).decode()


def _formatter() -> structlog.stdlib.ProcessorFormatter:
    import structlog

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared(), structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(serializer=_dumps)])


@contextlib.contextmanager
def daemon_logging(level: int = logging.INFO, stream: TextIO | None = None) -> Iterator[None]:
    """Send structlog and stdlib records (watchdog's too) to ``stream`` as JSON lines.

    Restores the previous logging and structlog configuration on exit, so running a
    daemon command in-process (tests, embedding) leaves nothing behind.

    Args:
        level: The lowest level written.
        stream: Where to write; default ``sys.stderr`` (stdout stays for data).
    """
    import structlog

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_formatter())
    root = logging.getLogger()
    old_level, old_config = root.level, structlog.get_config()
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[*_shared(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False)  # later reconfiguration must reach every logger
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        structlog.configure(**old_config)


def get_logger(name: str) -> Any:
    """A structlog logger for a daemon command (lazy: binds to the config when used)."""
    import structlog

    return structlog.stdlib.get_logger(name)
