"""JSON-lines logging on stdout (one object per line, ready for journald)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from .config import format_timestamp

LOGGER_NAME = "lbapp"
REQUEST_LOGGER_NAME = "lbapp.request"

# Attributes every LogRecord has; anything else was passed with ``extra=`` and
# becomes a field of the JSON object.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Render a record as a single-line JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": format_timestamp(datetime.fromtimestamp(record.created, timezone.utc)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            # The worker's pid: journald only sees the gunicorn master's.
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False, separators=(",", ":"))


class StdoutHandler(logging.StreamHandler):
    """A stream handler that always writes to the *current* ``sys.stdout``."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        """Ignore: the stream is looked up at each write."""


def configure_logging(level: str) -> logging.Logger:
    """Send the ``lbapp`` loggers to stdout as JSON; idempotent.

    gunicorn keeps its own ``gunicorn.error``/``gunicorn.access`` loggers; this
    touches only ours (``propagate`` is off so records are not printed twice).
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if isinstance(handler, StdoutHandler):
            logger.removeHandler(handler)
    handler = StdoutHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
