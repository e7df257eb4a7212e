"""gunicorn settings of the lbapp container image (/etc/lbapp/gunicorn.conf.py).

The same settings as the Ansible role's template (roles/backend/templates/gunicorn.conf.py.j2,
defaults in roles/backend/defaults/main.yml), except that the values come from environment
variables, so that `docker run -e ...` can change them:

    GUNICORN_WORKERS          number of workers; default 2 x CPUs + 1, like the role
    GUNICORN_BIND             listen address; default 0.0.0.0:8000 (the HEALTHCHECK expects 8000)
    GUNICORN_WORKER_TMP_DIR   workers' heartbeat files; default /tmp (a tmpfs with --read-only)
    FORWARDED_ALLOW_IPS       proxies trusted for X-Forwarded-Proto; default 127.0.0.1

The application's own variables (LBAPP_DISPLAY_NAME, ...) are read by lbapp itself, and
GUNICORN_CMD_ARGS overrides any setting here. A bad value stops gunicorn with one line.
"""

import os

# lbapp's server hooks (on_starting, child_exit), as the role's config takes them.
from lbapp.gunicorn_hooks import *  # noqa: F403


def _cpus() -> int:
    """CPUs this container may run on (its cpuset), not all of the host's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _positive_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or not 1 <= int(value) <= 256:
        raise SystemExit(f"lbapp: configuration error: {name}={value!r}: must be an integer 1-256")
    return int(value)


wsgi_app = "lbapp.wsgi:app"
bind = [os.environ.get("GUNICORN_BIND") or "0.0.0.0:8000"]  # noqa: S104  (published by the container runtime)
workers = _positive_int("GUNICORN_WORKERS", _cpus() * 2 + 1)
worker_class = "sync"
timeout = 30
graceful_timeout = 20
keepalive = 75
# Each worker keeps its own metrics files: leave 0 (see the role's notes on max_requests).
max_requests = 0
max_requests_jitter = 0
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or "/tmp"  # noqa: S108  (a tmpfs, private to the container)
# Only the load balancers may set X-Forwarded-Proto and friends.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1"
# The app logs one JSON line per request itself; gunicorn's error log goes to stderr.
accesslog = None
errorlog = "-"
