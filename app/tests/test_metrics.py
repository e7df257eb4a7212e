"""/metrics: content negotiation, statistics, and multiprocess collection."""

from __future__ import annotations

import os
import re

import pytest
from prometheus_client import CollectorRegistry, Counter, values
from prometheus_client.parser import text_string_to_metric_families

from lbapp.metrics import JSON, OPENMETRICS, TEXT, method_label, negotiate

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,"
    "text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
)
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        (BROWSER_ACCEPT, JSON),
        ("image/png", JSON),
        ("text/plain", TEXT),
        ("text/plain; version=0.0.4", TEXT),
        ("text/*", TEXT),
        ("application/openmetrics-text", OPENMETRICS),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", OPENMETRICS),
        (PROMETHEUS_ACCEPT, OPENMETRICS),
        ("text/plain;version=0.0.4;q=0.3,*/*;q=0.1", TEXT),
        ("text/plain;q=0.9, application/openmetrics-text;q=0.1", TEXT),
        ("application/json;q=0.1, text/plain", TEXT),
        ("text/plain;q=0, */*", JSON),
        ("text/plain;q=oops", JSON),
        (" , text/plain", TEXT),
    ],
)
def test_negotiate(accept, expected):
    assert negotiate(accept) == expected


def test_method_label_is_bounded():
    assert method_label("GET") == "GET"
    assert method_label("PROPFIND") == "OTHER"


def _stats(client):
    return client.get("/metrics").get_json()["requests"]


def test_json_default(client):
    client.get("/")
    client.get("/health")
    client.get("/missing")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert "Accept" in response.headers["Vary"]
    body = response.get_json()
    assert body["host"] and body["display_name"] == "Test Web 1"
    assert body["version"] == "1.2.3-test"
    assert body["pid"] == os.getpid()
    assert body["master_pid"] is None  # not under gunicorn
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["started_at"])
    assert body["uptime_seconds"] >= 0
    assert body["metrics_mode"] == "single-process"
    assert body["requests"] == {
        "total": 3,
        "by_endpoint": {"/": 1, "/health": 1, "<unmatched>": 1},
        "by_status": {"200": 2, "404": 1},
        "by_method": {"GET": 3},
    }


@pytest.mark.parametrize("accept", ["application/json", BROWSER_ACCEPT, "*/*"])
def test_json_for_browsers_and_json_clients(client, accept):
    assert client.get("/metrics", headers={"Accept": accept}).mimetype == "application/json"


def test_metrics_counts_itself_from_the_next_scrape(client):
    for _ in range(4):
        client.get("/health")
    first = _stats(client)
    second = _stats(client)
    third = _stats(client)
    assert first["total"] == 4
    assert second["total"] == first["total"] + 1
    assert third["total"] == second["total"] + 1
    assert third["by_endpoint"] == {"/health": 4, "/metrics": 2}


def test_master_pid_under_gunicorn(client):
    body = client.get("/metrics", environ_base={"SERVER_SOFTWARE": "gunicorn/23.0.0"}).get_json()
    assert body["master_pid"] == os.getppid()


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_prometheus_text(client):
    client.get("/health")
    client.get("/missing")
    client.open("/health", method="PROPFIND")
    response = client.get("/metrics", headers={"Accept": "text/plain"})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.get_data(as_text=True)
    assert 'lbapp_http_requests_total{endpoint="/health",method="GET",status="200"} 1.0' in text
    assert 'lbapp_http_requests_total{endpoint="<unmatched>",method="GET",status="404"} 1.0' in text
    assert (
        'lbapp_http_requests_total{endpoint="<unmatched>",method="OTHER",status="405"} 1.0' in text
    )
    assert 'lbapp_build_info{display_name="Test Web 1",version="1.2.3-test"} 1.0' in text
    assert "# TYPE lbapp_http_request_duration_seconds histogram" in text
    labels = 'endpoint="/health",method="GET",status="200"'
    assert f"lbapp_http_request_duration_seconds_count{{{labels}}} 1.0" in text
    families = _families(text)
    assert families["lbapp_http_requests"].type == "counter"
    # Default process metrics in single-process mode.
    assert "process_cpu_seconds" in families
    assert "python_info" in families


def test_openmetrics(client):
    client.get("/")
    for accept in ("application/openmetrics-text", PROMETHEUS_ACCEPT):
        response = client.get("/metrics", headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/openmetrics-text;")
        text = response.get_data(as_text=True)
        assert text.endswith("# EOF\n")
        assert 'lbapp_http_requests_total{endpoint="/",method="GET",status="200"} 1.0' in text


def test_head_metrics(client):
    response = client.head("/metrics", headers={"Accept": "text/plain"})
    assert response.status_code == 200
    assert response.get_data() == b""


# ----- multiprocess mode (in this process; gunicorn is in test_integration) ----------


def test_multiprocess_mode(multiproc_dir, make_app):
    env = {"LBAPP_DISPLAY_NAME": "Test Web 1", "LBAPP_VERSION": "1.2.3-test"}
    app = make_app(env, multiproc_dir=str(multiproc_dir))
    client = app.test_client()
    for _ in range(3):
        client.get("/")
    client.get("/health")

    body = client.get("/metrics").get_json()
    assert body["metrics_mode"] == "multiprocess"
    assert body["requests"]["total"] == 4
    assert body["requests"]["by_endpoint"] == {"/": 3, "/health": 1}
    assert _stats(client)["total"] == 5
    assert sorted(os.listdir(multiproc_dir)) == [
        f"counter_{os.getpid()}.db",
        f"gauge_livemax_{os.getpid()}.db",
        f"histogram_{os.getpid()}.db",
    ]

    text = client.get("/metrics", headers={"Accept": "text/plain"}).get_data(as_text=True)
    assert 'lbapp_http_requests_total{endpoint="/",method="GET",status="200"} 3.0' in text
    assert 'lbapp_build_info{display_name="Test Web 1",version="1.2.3-test"} 1.0' in text
    # Process metrics describe the parent (the gunicorn master under gunicorn), not one worker.
    families = _families(text)
    start = families["process_start_time_seconds"].samples[0].value
    with open(f"/proc/{os.getppid()}/stat") as stat:
        ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as stat:
        boot = next(int(line.split()[1]) for line in stat if line.startswith("btime"))
    assert start == pytest.approx(boot + ticks / os.sysconf("SC_CLK_TCK"), abs=0.02)


def test_multiprocess_sums_other_processes(multiproc_dir, make_app):
    """Counts written by another worker (another pid) are part of every scrape."""
    other_worker = values.MultiProcessValue(process_identifier=lambda: 424242)
    original = values.ValueClass
    values.ValueClass = other_worker
    try:
        counter = Counter(
            "lbapp_http_requests",
            "from another worker",
            ("endpoint", "method", "status"),
            registry=CollectorRegistry(),
        )
        counter.labels("/health", "GET", "200").inc(7)
    finally:
        values.ValueClass = original

    client = make_app(multiproc_dir=str(multiproc_dir)).test_client()
    client.get("/health")
    stats = _stats(client)
    assert stats["total"] == 8
    assert stats["by_endpoint"] == {"/health": 8}
    assert "counter_424242.db" in os.listdir(multiproc_dir)
