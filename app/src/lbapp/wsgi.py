"""WSGI entry point: ``gunicorn lbapp.wsgi:app``.

A configuration error ends the process with one line on stderr and exit status
4, which gunicorn treats as "App failed to load": the master stops instead of
respawning workers that would fail the same way. (With the hooks of
``lbapp.gunicorn_hooks`` the master already checks the configuration before it
starts any worker.)
"""

from __future__ import annotations

from flask import Flask

from . import create_app
from .config import EXIT_CONFIG_ERROR, ConfigError, exit_on_config_error

__all__ = ["EXIT_CONFIG_ERROR", "app"]


def _load() -> Flask:
    try:
        return create_app()
    except ConfigError as exc:
        exit_on_config_error(exc)


app = _load()
