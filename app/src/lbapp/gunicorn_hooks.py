"""Server hooks for gunicorn; import them from the gunicorn config file::

    from lbapp.gunicorn_hooks import child_exit, on_starting  # noqa: F401

Importable without gunicorn or Flask: only the standard library, lbapp.config
and prometheus_client are imported. prometheus_client is imported here, at
config-load time, on purpose: gunicorn calls ``child_exit`` from its SIGCHLD
handler, and a first import inside a signal handler can be re-entered by the
next signal and fail.
"""

from __future__ import annotations

import glob
import os
from datetime import datetime, timezone
from typing import Any

from prometheus_client import multiprocess

from .config import MULTIPROC_ENV, ConfigError, exit_on_config_error, format_timestamp, load_config

STARTED_AT_ENV = "LBAPP_STARTED_AT"


def _info(server: Any, message: str) -> None:
    logger = getattr(server, "log", None)
    if logger is not None:
        logger.info(message)


def prepare_multiproc_dir(directory: str) -> int:
    """Create ``directory`` if missing and delete stale ``*.db`` files; return how many."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    removed = 0
    for path in glob.glob(os.path.join(glob.escape(directory), "*.db")):
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        removed += 1
    return removed


def on_starting(server: Any) -> None:
    """Master, before any worker: record the start time, reset metric files, check config.

    Workers are forked from the master and inherit its environment, so all of
    them report the service's start time rather than their own. A bad setting
    stops gunicorn here, with one line on stderr and exit status 4, before it
    binds its socket or forks a worker.
    """
    started_at = format_timestamp(datetime.now(timezone.utc))
    os.environ[STARTED_AT_ENV] = started_at
    try:
        directory = os.environ.get(MULTIPROC_ENV)
        if directory:
            try:
                removed = prepare_multiproc_dir(directory)
            except OSError as exc:
                raise ConfigError(
                    MULTIPROC_ENV, directory, f"cannot prepare the directory ({exc.strerror})"
                ) from None
            _info(
                server,
                f"lbapp: metrics in multiprocess mode at {directory} "
                f"({removed} stale file(s) removed)",
            )
        load_config()
    except ConfigError as exc:
        exit_on_config_error(exc)
    _info(server, f"lbapp: service started at {started_at}")


def child_exit(server: Any, worker: Any) -> None:
    """Master, after a worker exited: drop its live gauges (multiprocess mode only)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(worker.pid)
