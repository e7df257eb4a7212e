"""The application factory (use :func:`lbapp.create_app`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.middleware.proxy_fix import ProxyFix

from . import request_id
from .config import Config, load_config
from .drain import DrainState
from .logs import REQUEST_LOGGER_NAME, configure_logging
from .metrics import UNMATCHED_ENDPOINT, Metrics
from .state import EXTENSION_KEY, AppState, get_state
from .views import bp

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# Endpoints whose errors are always JSON (machines call them).
API_PATHS = ("/health", "/metrics")

log = logging.getLogger("lbapp")
request_log = logging.getLogger(REQUEST_LOGGER_NAME)


def _resolve_config(config: Config | Mapping[str, str] | None) -> Config:
    if config is None:
        return load_config()
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return load_config(config)
    raise TypeError("config must be a lbapp.config.Config, a mapping or None")


def build_app(config: Config | Mapping[str, str] | None = None) -> Flask:
    cfg = _resolve_config(config)
    configure_logging(cfg.log_level)

    app = Flask("lbapp")
    # Never debug, whatever FLASK_DEBUG says: Flask reads it into DEBUG at init.
    app.debug = False
    app.config.update(
        DEBUG=False,
        # Always go through our error handler (no tracebacks to clients).
        PROPAGATE_EXCEPTIONS=False,
        # Only POST /echo takes a body, and the zero-downtime test needs no more.
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    # SERVER_NAME stays unset on purpose: the display name is only shown. No SECRET_KEY
    # either: no endpoint uses sessions, so Flask's null session is all requests get.

    app.extensions[EXTENSION_KEY] = AppState(
        config=cfg,
        metrics=Metrics(cfg),
        drain=DrainState(cfg.drain_file, cfg.drain_check_interval),
    )
    if cfg.proxy_hops:
        hops = cfg.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_blueprint(bp)

    log.info(
        "lbapp ready",
        extra={
            "display_name": cfg.display_name,
            "version": cfg.version,
            "host": cfg.hostname,
            "metrics_mode": "multiprocess" if cfg.multiprocess else "single-process",
            "proxy_hops": cfg.proxy_hops,
            "drain_file": cfg.drain_file,
        },
    )
    return app


def _start_request() -> None:
    g.request_started = time.perf_counter()
    g.request_id, g.request_id_replaced = request_id.resolve(request.headers.get(request_id.HEADER))


def _finish_request(response: Response) -> Response:
    state = get_state()
    cfg = state.config
    rid = g.get("request_id") or request_id.new_request_id()
    response.headers[request_id.HEADER] = rid
    response.headers["X-Backend"] = cfg.hostname
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    endpoint = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ENDPOINT
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"

    started = g.get("request_started")
    seconds = time.perf_counter() - started if started is not None else 0.0
    state.metrics.observe(endpoint, request.method, response.status_code, seconds)
    request_log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "request_id": rid,
            "request_id_replaced": bool(g.get("request_id_replaced", False)),
            "method": request.method,
            "path": request.path,
            "endpoint": endpoint,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 3),
            "remote_addr": request.remote_addr,
            "host": cfg.hostname,
        },
    )
    return response


def _wants_html() -> bool:
    if request.path in API_PATHS:
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def _handle_http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    title = HTTP_STATUS_CODES.get(code, "Error")
    rid = g.get("request_id") or ""
    if _wants_html():
        response = Response(
            render_template("error.html", code=code, title=title, request_id=rid),
            status=code,
            mimetype="text/html",
        )
    else:
        response = jsonify({"error": {"status": code, "title": title, "request_id": rid}})
        response.status_code = code
    if code == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response
