"""Structured logs: one JSON object per line on stdout."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys

from lbapp.logs import JsonFormatter, StdoutHandler, configure_logging

REQUEST_FIELDS = {
    "ts",
    "level",
    "logger",
    "msg",
    "pid",
    "request_id",
    "request_id_replaced",
    "method",
    "path",
    "endpoint",
    "status",
    "duration_ms",
    "remote_addr",
    "host",
}


def _request_lines(records):
    return [r for r in records if r["logger"] == "lbapp.request"]


def test_request_line_fields(client, logs):
    logs()
    client.get("/health?token=hunter2", headers={"X-Request-ID": "log-1"})
    (line,) = _request_lines(logs())
    assert set(line) == REQUEST_FIELDS
    assert line["level"] == "INFO"
    assert line["msg"] == "GET /health 200"
    assert line["method"] == "GET"
    assert line["path"] == "/health"
    assert line["endpoint"] == "/health"
    assert line["status"] == 200
    assert line["request_id"] == "log-1"
    assert line["remote_addr"] == "127.0.0.1"
    assert line["host"] == socket.gethostname()
    assert line["pid"] == os.getpid()
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["ts"].endswith("Z")


def test_query_strings_are_not_logged(client, capsys):
    client.get("/health?token=hunter2&password=swordfish")
    out = capsys.readouterr().out
    assert "hunter2" not in out and "swordfish" not in out


def test_unmatched_endpoint_label(client, logs):
    logs()
    client.get("/does/not/exist")
    (line,) = _request_lines(logs())
    assert (line["endpoint"], line["status"]) == ("<unmatched>", 404)


def test_remote_addr_honours_one_proxy_hop(client, logs):
    logs()
    client.get("/health", headers={"X-Forwarded-For": "198.51.100.7"})
    assert _request_lines(logs())[0]["remote_addr"] == "198.51.100.7"


def test_remote_addr_only_trusts_configured_hops(client, logs):
    logs()
    client.get("/health", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
    assert _request_lines(logs())[0]["remote_addr"] == "198.51.100.7"


def test_proxy_hops_zero_ignores_forwarded_headers(make_app, logs):
    client = make_app({"LBAPP_PROXY_HOPS": "0"}).test_client()
    logs()
    client.get("/health", headers={"X-Forwarded-For": "198.51.100.7"})
    assert _request_lines(logs())[0]["remote_addr"] == "127.0.0.1"


def test_forwarded_proto_and_host(make_app):
    app = make_app({"LBAPP_PROXY_HOPS": "1"})

    @app.get("/where")
    def where():
        from flask import request

        return {"scheme": request.scheme, "host": request.host}

    body = (
        app.test_client()
        .get("/where", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "lb.example"})
        .get_json()
    )
    assert body == {"scheme": "https", "host": "lb.example"}


def test_log_level_filters_request_lines(make_app, logs):
    client = make_app({"LBAPP_LOG_LEVEL": "WARNING"}).test_client()
    logs()
    client.get("/health")
    assert _request_lines(logs()) == []


def test_startup_line(make_app, logs):
    logs()
    make_app()
    (ready,) = logs()
    assert (ready["level"], ready["msg"]) == ("INFO", "lbapp ready")
    assert ready["metrics_mode"] == "single-process"


def test_every_stdout_line_is_json(client, capsys):
    client.get("/")
    client.get("/missing")
    for line in capsys.readouterr().out.splitlines():
        assert isinstance(json.loads(line), dict)


def test_configure_logging_is_idempotent():
    logger = configure_logging("INFO")
    configure_logging("DEBUG")
    ours = [h for h in logger.handlers if isinstance(h, StdoutHandler)]
    assert len(ours) == 1
    assert logger.level == logging.DEBUG
    assert logger.propagate is False


def test_formatter_renders_exceptions_and_stacks():
    try:
        raise ValueError("bad thing")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "lbapp.test", logging.ERROR, __file__, 1, "failed %s", ("x",), exc_info
    )
    record.stack_info = "Stack (most recent call last):\n  here"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["msg"]) == ("ERROR", "lbapp.test", "failed x")
    assert "ValueError: bad thing" in entry["exc"]
    assert "here" in entry["stack"]
