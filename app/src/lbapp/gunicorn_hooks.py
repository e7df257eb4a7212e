"""Server hooks for gunicorn; import them from the gunicorn config file::

    from lbapp.gunicorn_hooks import *  # on_starting and child_exit

Importable without gunicorn or Flask (send_head_with_body imports gunicorn when
called): only the standard library, lbapp.config and prometheus_client are
imported. prometheus_client is imported here, at config-load time, on purpose:
gunicorn calls ``child_exit`` from its SIGCHLD handler, and a first import inside
a signal handler can be re-entered by the next signal and fail.
"""

from __future__ import annotations

import glob
import os
from datetime import datetime, timezone
from typing import Any

from prometheus_client import multiprocess

from .config import MULTIPROC_ENV, ConfigError, exit_on_config_error, format_timestamp, load_config

STARTED_AT_ENV = "LBAPP_STARTED_AT"
# What a gunicorn config file's star import takes: the server hooks, nothing else.
__all__ = ["child_exit", "on_starting"]


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

    Also makes gunicorn send a response's head with its body (send_head_with_body), so that
    workers forked from now on inherit it.

    Workers are forked from the master and inherit its environment, so all of
    them report the service's start time rather than their own. A bad setting
    stops gunicorn here, with one line on stderr and exit status 4, before it
    binds its socket or forks a worker.
    """
    send_head_with_body()
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


class _Gather:
    """Stands in for the client socket while one write is assembled."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.parts.append(bytes(data))


def send_head_with_body() -> None:
    """Make gunicorn send a response's header block and first body write in one sendall.

    Gunicorn sends them apart. A worker killed between the two (a thread switch in gthread
    makes the gap milliseconds long) leaves NGINX with headers it has already passed on, so
    it can neither retry the request elsewhere nor finish it. Calling it again changes nothing.
    """
    from gunicorn.http import wsgi

    if getattr(wsgi.Response, "lbapp_head_with_body", False):
        return

    class Response(wsgi.Response):
        lbapp_head_with_body = True

        def write(self, arg: bytes) -> None:
            if self.headers_sent:
                return super().write(arg)
            sock, self.sock = self.sock, _Gather()
            try:
                super().write(arg)
            finally:
                gathered, self.sock = self.sock, sock
            sock.sendall(b"".join(gathered.parts))

    wsgi.Response = Response
