"""A plain WSGI callable with a health path of its own: no Flask, no metrics, no hooks."""

from __future__ import annotations

import json
import os


def app(environ, start_response):
    name = os.environ.get("HELLO_NAME", "somewhere")
    if environ.get("PATH_INFO") == "/healthz":
        body = json.dumps({"ok": True, "release": os.environ.get("HELLO_RELEASE", "")}).encode()
        kind = "application/json"
    else:
        body = f"hello from {name}\n".encode()
        kind = "text/plain; charset=utf-8"
    # X-Backend: the header the tests' load driver counts answers by.
    start_response("200 OK", [("Content-Type", kind), ("Content-Length", str(len(body))), ("X-Backend", name)])
    return [body]
