"""POST /echo: one log line and one count per executed POST, and a digest of the body."""

from __future__ import annotations

import hashlib
import os
import socket

import pytest

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
POSTS_SAMPLE = "lbapp_posts_received_total"
LIMIT = 64 * 1024


def _posts(app) -> float:
    registry = app.extensions["lbapp"].metrics.collect_registry()
    return registry.get_sample_value(POSTS_SAMPLE) or 0.0


def _post_lines(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("event") == "post_received"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", None),
        (b"hello", "text/plain"),
        (bytes(range(256)) * 8, "application/octet-stream"),
        (b"a=1&b=2", "application/x-www-form-urlencoded"),
        (b"x" * LIMIT, None),
    ],
)
def test_echo_answer(client, body, content_type):
    response = client.post("/echo", data=body, content_type=content_type)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {
        "host": socket.gethostname(),
        "request_id": response.headers["X-Request-ID"],
        "received_bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_echo_keeps_incoming_request_id(client):
    response = client.post("/echo", data=b"x", headers={"X-Request-ID": "zdt-0001"})
    assert response.get_json()["request_id"] == "zdt-0001"
    assert response.headers["X-Request-ID"] == "zdt-0001"


def test_echo_logs_once_per_post(client, logs):
    logs()
    for n in range(3):
        client.post("/echo", data=b"body", headers={"X-Request-ID": f"zdt-{n}"})
    client.get("/health", headers={"X-Request-ID": "not-a-post"})
    records = logs()
    lines = _post_lines(records)
    assert [line["request_id"] for line in lines] == ["zdt-0", "zdt-1", "zdt-2"]
    for line in lines:
        assert (line["level"], line["logger"], line["msg"]) == ("INFO", "lbapp", "POST received")
        assert line["pid"] == os.getpid()
    # The execution record comes before the request line of the same request.
    order = [(r["logger"], r["request_id"]) for r in records if r.get("request_id") == "zdt-0"]
    assert order == [("lbapp", "zdt-0"), ("lbapp.request", "zdt-0")]


def test_echo_log_has_generated_request_id(client, logs):
    logs()
    response = client.post("/echo", data=b"x", headers={"X-Request-ID": "bad id!"})
    (line,) = _post_lines(logs())
    assert line["request_id"] == response.headers["X-Request-ID"] != "bad id!"


def test_counter_counts_each_post_once(app, client):
    assert _posts(app) == 0
    for expected in (1, 2, 3):
        client.post("/echo", data=b"x")
        assert _posts(app) == expected
    client.get("/health")
    client.get("/echo")
    assert _posts(app) == 3


def test_counter_in_prometheus_text_and_json_stats_unchanged(client):
    client.post("/echo", data=b"x")
    client.post("/echo", data=b"y")
    text = client.get("/metrics", headers={"Accept": "text/plain"}).get_data(as_text=True)
    assert "# TYPE lbapp_posts_received_total counter" in text
    assert f"{POSTS_SAMPLE} 2.0" in text
    # The JSON statistics still count HTTP requests only.
    assert client.get("/metrics").get_json()["requests"] == {
        "total": 3,
        "by_endpoint": {"/echo": 2, "/metrics": 1},
        "by_status": {"200": 3},
        "by_method": {"GET": 1, "POST": 2},
    }


def test_counter_in_multiprocess_mode(multiproc_dir, make_app):
    app = make_app(multiproc_dir=str(multiproc_dir))
    client = app.test_client()
    client.post("/echo", data=b"x")
    client.post("/echo", data=b"y")
    assert _posts(app) == 2
    text = client.get("/metrics", headers={"Accept": "text/plain"}).get_data(as_text=True)
    assert f"{POSTS_SAMPLE} 2.0" in text
    assert client.get("/metrics").get_json()["requests"]["by_endpoint"] == {
        "/echo": 2,
        "/metrics": 1,
    }


def test_body_over_the_limit_is_413(app, client, logs):
    logs()
    response = client.post("/echo", data=b"x" * (LIMIT + 1), headers={"X-Request-ID": "big"})
    assert response.status_code == 413
    assert response.get_json()["error"]["title"] == "Request Entity Too Large"
    # The view had started (the body is read after the record), so it is recorded and counted.
    assert [line["request_id"] for line in _post_lines(logs())] == ["big"]
    assert _posts(app) == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405(client, method):
    response = client.open("/echo", method=method)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}


def test_405_html_for_browsers(client):
    response = client.get("/echo", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert "Method Not Allowed" in response.get_data(as_text=True)
    assert set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
