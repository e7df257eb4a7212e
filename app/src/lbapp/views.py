"""The endpoints: ``/`` (HTML), ``/health``, ``/metrics`` and ``POST /echo``."""

from __future__ import annotations

import hashlib
import logging
import os

from flask import Blueprint, Response, g, jsonify, render_template, request

from .config import format_timestamp
from .logs import LOGGER_NAME
from .metrics import JSON, exposition, negotiate, request_stats
from .state import get_state

bp = Blueprint("lbapp", __name__)
log = logging.getLogger(LOGGER_NAME)

HEALTHY = "healthy"
DRAINING = "draining"


def _identity() -> dict:
    state = get_state()
    cfg = state.config
    return {
        "host": cfg.hostname,
        "display_name": cfg.display_name,
        "version": cfg.version,
        "uptime_seconds": state.uptime_seconds(),
    }


@bp.get("/")
def index() -> str:
    state = get_state()
    cfg = state.config
    now = state.now()
    return render_template(
        "index.html",
        display_name=cfg.display_name,
        host=cfg.hostname,
        version=cfg.version,
        status=DRAINING if state.drain.is_draining() else HEALTHY,
        now_iso=format_timestamp(now),
        now_text=now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        request_id=g.request_id,
    )


@bp.get("/health")
def health() -> tuple[Response, int]:
    # Cheap on purpose: no I/O beyond the (cached) stat() of the drain file.
    draining = get_state().drain.is_draining()
    payload = {"status": DRAINING if draining else HEALTHY}
    payload.update(_identity())
    return jsonify(payload), 503 if draining else 200


def _master_pid() -> int | None:
    # gunicorn's workers are children of its master (the arbiter).
    if str(request.environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn"):
        return os.getppid()
    return None


@bp.get("/metrics")
def metrics() -> Response:
    state = get_state()
    fmt = negotiate(request.headers.get("Accept"))
    registry = state.metrics.collect_registry()
    if fmt == JSON:
        payload = _identity()
        payload.update(
            {
                "pid": os.getpid(),
                "master_pid": _master_pid(),
                "started_at": format_timestamp(state.config.started_at),
                "metrics_mode": "multiprocess" if state.config.multiprocess else "single-process",
                "requests": request_stats(registry),
            }
        )
        response = jsonify(payload)
    else:
        body, content_type = exposition(fmt, registry)
        response = Response(body, content_type=content_type)
    response.vary.add("Accept")
    return response


@bp.post("/echo")
def echo() -> Response:
    """Record that this backend executed a POST, then describe the body it got."""
    # Log before anything else, so a worker killed mid-request still leaves its record.
    log.info("POST received", extra={"event": "post_received", "request_id": g.request_id})
    state = get_state()
    state.metrics.posts_received.inc()
    body = request.get_data(cache=False)
    return jsonify(
        {
            "host": state.config.hostname,
            "request_id": g.request_id,
            "received_bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    )
