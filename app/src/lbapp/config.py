"""Start-up configuration, read from ``LBAPP_*`` environment variables.

Everything is parsed and validated once, when the application is created, into
the frozen :class:`Config`. A bad value raises :class:`ConfigError`, whose
message names the variable and shows the offending value, so that gunicorn
fails at boot with one clear line instead of later, inside a request.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NoReturn

from . import __version__

PREFIX = "LBAPP_"

DEFAULT_DRAIN_FILE = "/run/lbapp/drain"
DEFAULT_PROXY_HOPS = 1
MAX_PROXY_HOPS = 5
DEFAULT_LOG_LEVEL = "INFO"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# prometheus_client's own variable, not ours: it switches it to multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Exit status on a configuration error: gunicorn's "App failed to load" (Arbiter.APP_LOAD_ERROR),
# so a worker failing with it stops the master instead of being respawned forever.
EXIT_CONFIG_ERROR = 4

_VERSION_RE = re.compile(r"[A-Za-z0-9._+-]{1,64}")
_DIGITS_RE = re.compile(r"[0-9]{1,3}")


class ConfigError(ValueError):
    """A configuration variable holds a value the service cannot run with."""

    def __init__(self, variable: str, value: str, problem: str) -> None:
        self.variable = variable
        self.value = value
        self.problem = problem
        super().__init__(f"{variable}={_show(value)}: {problem}")


def exit_on_config_error(exc: ConfigError) -> NoReturn:
    """Print one line on stderr (no traceback) and exit with :data:`EXIT_CONFIG_ERROR`."""
    sys.stderr.write(f"lbapp: configuration error: {exc}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_CONFIG_ERROR)


def _show(value: str, limit: int = 80) -> str:
    """A one-line, bounded rendering of a bad value (repr escapes control chars)."""
    if len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} chars)"
    return repr(value)


@dataclass(frozen=True)
class Config:
    """Validated settings of one process. Build it with :func:`load_config`."""

    display_name: str
    version: str
    hostname: str
    drain_file: str
    proxy_hops: int
    log_level: str
    multiproc_dir: str | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    # Not an environment variable: how long /health may reuse one stat() of the
    # drain file. Tests set it to 0.
    drain_check_interval: float = 1.0

    @property
    def multiprocess(self) -> bool:
        return self.multiproc_dir is not None


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Parse and validate the configuration from ``environ`` (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    hostname = socket.gethostname()
    return Config(
        display_name=_display_name(env, hostname),
        version=_version(env),
        hostname=hostname,
        drain_file=_drain_file(env),
        proxy_hops=_proxy_hops(env),
        log_level=_log_level(env),
        multiproc_dir=_multiproc_dir(env),
        started_at=_started_at(env),
    )


def _display_name(env: Mapping[str, str], hostname: str) -> str:
    name = PREFIX + "DISPLAY_NAME"
    value = env.get(name)
    if value is None:
        return hostname[:100] or "lbapp"
    if not 1 <= len(value) <= 100:
        raise ConfigError(name, value, f"must be 1 to 100 characters long (got {len(value)})")
    if not value.isprintable():
        raise ConfigError(name, value, "must contain printable characters only")
    return value


def _version(env: Mapping[str, str]) -> str:
    name = PREFIX + "VERSION"
    value = env.get(name)
    if value is None:
        return __version__
    if not _VERSION_RE.fullmatch(value):
        raise ConfigError(name, value, "must be 1 to 64 characters of A-Z a-z 0-9 . _ + -")
    return value


def _drain_file(env: Mapping[str, str]) -> str:
    name = PREFIX + "DRAIN_FILE"
    value = env.get(name)
    if value is None:
        return DEFAULT_DRAIN_FILE
    if not value.startswith("/") or "\0" in value or not value.isprintable():
        raise ConfigError(name, value, "must be an absolute path")
    if value.endswith("/"):
        raise ConfigError(name, value, "must name a file, not a directory")
    return value


def _proxy_hops(env: Mapping[str, str]) -> int:
    name = PREFIX + "PROXY_HOPS"
    value = env.get(name)
    if value is None:
        return DEFAULT_PROXY_HOPS
    text = value.strip()
    # Not int(): it would also take "+1", "1_0" and non-ASCII digits.
    if not _DIGITS_RE.fullmatch(text) or int(text) > MAX_PROXY_HOPS:
        raise ConfigError(name, value, f"must be an integer from 0 to {MAX_PROXY_HOPS}")
    return int(text)


def _log_level(env: Mapping[str, str]) -> str:
    name = PREFIX + "LOG_LEVEL"
    value = env.get(name)
    if value is None:
        return DEFAULT_LOG_LEVEL
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(name, value, "must be one of " + ", ".join(LOG_LEVELS))
    return level


def _multiproc_dir(env: Mapping[str, str]) -> str | None:
    value = env.get(MULTIPROC_ENV)
    if not value:
        return None
    if not os.path.isdir(value):
        raise ConfigError(
            MULTIPROC_ENV,
            value,
            "is not a directory (the gunicorn on_starting hook creates it; "
            "see lbapp.gunicorn_hooks)",
        )
    return value


def _started_at(env: Mapping[str, str]) -> datetime:
    name = PREFIX + "STARTED_AT"
    value = env.get(name)
    if value is None:
        return datetime.now(timezone.utc)
    return parse_timestamp(name, value)


def parse_timestamp(name: str, value: str) -> datetime:
    """Parse an ISO 8601 time with a UTC offset (``Z`` allowed, also on Python 3.9)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(name, value, "must be an ISO 8601 timestamp") from None
    if stamp.tzinfo is None:
        raise ConfigError(name, value, "must include a UTC offset, e.g. 'Z' or '+00:00'")
    return stamp.astimezone(timezone.utc)


def format_timestamp(stamp: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z`` suffix."""
    utc = stamp.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
