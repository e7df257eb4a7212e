"""The three endpoints, security headers, error pages and the app factory."""

from __future__ import annotations

import importlib.metadata
import re
import socket

import pytest

import lbapp
from lbapp import create_app
from lbapp.factory import CONTENT_SECURITY_POLICY

HOST = socket.gethostname()
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


# ----- / -----------------------------------------------------------------------


def test_index_page(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<h1 id="display-name">Test Web 1</h1>' in html
    assert f'<dd id="backend">{HOST}</dd>' in html
    assert '<dd id="version">1.2.3-test</dd>' in html
    assert "status-healthy" in html
    assert re.search(r'<time id="time" datetime="\d{4}-\d\d-\d\dT[\d:.]+Z">', html)
    request_id = response.headers["X-Request-ID"]
    assert f'<code id="request-id">{request_id}</code>' in html
    assert 'href="/static/style.css"' in html


def test_index_has_no_inline_styles_or_scripts(client):
    html = client.get("/").get_data(as_text=True).lower()
    assert "<script" not in html
    assert "<style" not in html
    assert "style=" not in html
    assert "javascript:" not in html


def test_index_escapes_display_name(make_app):
    app = make_app({"LBAPP_DISPLAY_NAME": "<script>alert(1)</script> & co"})
    html = app.test_client().get("/").get_data(as_text=True)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html


def test_index_does_not_reflect_query_or_headers(client):
    html = client.get("/?name=<b>reflected</b>", headers={"User-Agent": "<i>agent</i>"}).get_data(
        as_text=True
    )
    assert "reflected" not in html
    assert "agent" not in html


def test_index_head(client):
    response = client.head("/")
    assert response.status_code == 200
    assert response.get_data() == b""


HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def test_html_security_headers(client):
    response = client.get("/")
    for name, value in HTML_HEADERS.items():
        assert response.headers[name] == value, name
    assert HTML_HEADERS["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", ["/", "/health", "/metrics", "/missing", "/static/style.css"])
def test_backend_and_request_id_headers_everywhere(client, path):
    response = client.get(path)
    assert response.headers["X-Backend"] == HOST
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert "Server" not in response.headers


@pytest.mark.parametrize("path", ["/", "/health", "/metrics"])
def test_no_version_in_headers(client, path):
    response = client.get(path)
    for name, value in response.headers.items():
        if name != "X-Request-ID":
            assert "1.2.3-test" not in value, name
            assert "Werkzeug" not in value and "Python" not in value, name


def test_static_css(client):
    response = client.get("/static/style.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert b"linear-gradient" in response.get_data()
    assert response.headers["Cache-Control"] != "no-store"
    response.close()


def test_static_favicon(client):
    response = client.get("/static/favicon.svg")
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    response.close()


# ----- /health -----------------------------------------------------------------


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"status", "host", "display_name", "version", "uptime_seconds"}
    assert body["status"] == "healthy"
    assert body["host"] == HOST
    assert body["display_name"] == "Test Web 1"
    assert body["version"] == "1.2.3-test"
    assert isinstance(body["uptime_seconds"], float)
    assert body["uptime_seconds"] >= 0
    assert response.headers["Cache-Control"] == "no-store"


def test_health_head(client):
    response = client.head("/health")
    assert response.status_code == 200
    assert response.get_data() == b""
    assert response.headers["X-Request-ID"]


def test_uptime_counts_from_started_at(make_app):
    app = make_app({"LBAPP_STARTED_AT": "2020-01-01T00:00:00Z"})
    body = app.test_client().get("/health").get_json()
    assert body["uptime_seconds"] > 5 * 365 * 24 * 3600


# ----- errors ------------------------------------------------------------------


def test_404_json_for_curl(client):
    response = client.get("/nope", headers={"Accept": "*/*"})
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["status"] == 404
    assert error["title"] == "Not Found"
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_404_html_for_browsers(client):
    response = client.get("/nope", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "Not Found" in html
    assert response.headers["X-Request-ID"] in html
    assert "/nope" not in html
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_api_errors_stay_json_for_browsers(client):
    response = client.post("/health", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_405_on_metrics(client):
    response = client.delete("/metrics")
    assert response.status_code == 405
    assert response.get_json()["error"]["title"] == "Method Not Allowed"


def _boom_app(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals /etc/passwd")

    return app


@pytest.mark.parametrize("accept", ["application/json", BROWSER_ACCEPT])
def test_500_never_leaks_traceback(make_app, accept):
    client = _boom_app(make_app).test_client()
    response = client.get("/boom", headers={"Accept": accept})
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Internal Server Error" in body
    for leak in ("Traceback", "RuntimeError", "secret internals", "/etc/passwd"):
        assert leak not in body
    assert response.headers["X-Request-ID"] in body
    assert response.headers["X-Backend"] == HOST


def test_500_is_logged_with_traceback(make_app, logs):
    client = _boom_app(make_app).test_client()
    client.get("/boom", headers={"X-Request-ID": "req-500"})
    records = logs()
    errors = [r for r in records if r["level"] == "ERROR"]
    assert errors and "RuntimeError: secret internals" in errors[0]["exc"]
    line = [r for r in records if r["logger"] == "lbapp.request"][-1]
    assert (line["status"], line["endpoint"], line["request_id"]) == (500, "/boom", "req-500")


# ----- factory -----------------------------------------------------------------


def test_factory_never_enables_debug(make_app, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = make_app()
    assert app.debug is False
    assert app.config["DEBUG"] is False


def test_server_name_is_not_the_display_name(app):
    assert app.config["SERVER_NAME"] is None


def test_no_response_sets_a_cookie(client):
    for response in (client.get("/"), client.get("/health"), client.get("/missing")):
        assert "Set-Cookie" not in response.headers


def test_create_app_from_environ_mapping(base_env):
    env = dict(base_env, LBAPP_DISPLAY_NAME="mapped")
    app = create_app(env)
    assert app.test_client().get("/health").get_json()["display_name"] == "mapped"


def test_create_app_from_os_environ(monkeypatch, base_env):
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LBAPP_DISPLAY_NAME", "from-env")
    assert create_app().test_client().get("/health").get_json()["display_name"] == "from-env"


def test_create_app_rejects_other_config_types():
    with pytest.raises(TypeError):
        create_app(42)


def test_create_app_propagates_config_error(base_env):
    from lbapp.config import ConfigError

    with pytest.raises(ConfigError, match="LBAPP_LOG_LEVEL"):
        create_app(dict(base_env, LBAPP_LOG_LEVEL="LOUD"))


def test_installed_version_matches_package():
    assert importlib.metadata.version("lbapp") == lbapp.__version__
