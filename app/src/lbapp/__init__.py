"""lbapp: the Flask backend that the NGINX load balancer spreads traffic over.

``create_app`` builds the application; ``lbapp.wsgi:app`` is the gunicorn entry
point and ``lbapp.gunicorn_hooks`` holds the server hooks. This module stays
light (Flask is imported on first use) so that the gunicorn master can import
the hooks cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "1.0.0"

if TYPE_CHECKING:
    from collections.abc import Mapping

    from flask import Flask

    from .config import Config

__all__ = ["__version__", "create_app"]


def create_app(config: Config | Mapping[str, str] | None = None) -> Flask:
    """Build the Flask application.

    ``config`` is a :class:`lbapp.config.Config`, a mapping read like the
    environment (``{"LBAPP_DISPLAY_NAME": ...}``), or ``None`` for ``os.environ``.
    Raises :class:`lbapp.config.ConfigError` on a bad setting.
    """
    from .factory import build_app

    return build_app(config)
