"""Real gunicorn, 3 workers, multiprocess metrics, on 127.0.0.1 only.

Everything is bounded: every HTTP call has a timeout, start-up is polled for at
most STARTUP_TIMEOUT seconds, and gunicorn's process group is always stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import clean_env

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
WORKERS = 3
REQUESTS = 60  # half to /, half to /health
SCRAPES = 5
STARTUP_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0

GUNICORN_CONF = """\
# As the backend role's config does it.
from lbapp.gunicorn_hooks import *  # noqa: F403

timeout = 30
graceful_timeout = 5
accesslog = {accesslog!r}
access_log_format = '%(h)s "%(r)s" %(s)s rid=%({{x-request-id}}o)s'
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Gunicorn:
    def __init__(self, port: int, process: subprocess.Popen, tmp_path: Path) -> None:
        self.port = port
        self.process = process
        self.tmp_path = tmp_path

    def request(self, path: str, headers: dict | None = None, method: str = "GET"):
        """One request over a fresh connection: (status, headers, body bytes)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=HTTP_TIMEOUT)
        try:
            conn.request(method, path, headers={"Connection": "close", **(headers or {})})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def metrics(self) -> dict:
        status, _, body = self.request("/metrics")
        assert status == 200
        return json.loads(body)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)

    def stdout(self) -> str:
        return (self.tmp_path / "stdout.log").read_text()

    def stderr(self) -> str:
        return (self.tmp_path / "stderr.log").read_text()


def _start(
    tmp_path: Path, workers: int = WORKERS, with_hooks: bool = True, **env_extra: str
) -> Gunicorn:
    port = _free_port()
    env = clean_env(tmp_path, **env_extra)
    command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"{HOST}:{port}"]
    if with_hooks:
        conf = tmp_path / "gunicorn_test.conf.py"
        conf.write_text(GUNICORN_CONF.format(accesslog=str(tmp_path / "access.log")))
        command += ["-c", str(conf)]
    command.append("lbapp.wsgi:app")
    with open(tmp_path / "stdout.log", "wb") as out, open(tmp_path / "stderr.log", "wb") as err:
        process = subprocess.Popen(  # noqa: S603 - fixed command line
            command,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group, so stop() gets the workers too
        )
    return Gunicorn(port, process, tmp_path)


def _booted_workers(server: Gunicorn) -> int:
    """How many workers have logged "lbapp ready" (each does once, after loading the app)."""
    return sum('"msg":"lbapp ready"' in line for line in server.stdout().splitlines())


def _wait_ready(server: Gunicorn, workers: int = WORKERS) -> None:
    """Wait until every worker has loaded the app and the socket answers."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"gunicorn exited early:\n{server.stderr()}")
        if _booted_workers(server) >= workers:
            try:
                status, _, _ = server.request("/health")
                if status == 200:
                    return
            except OSError:
                pass
        time.sleep(0.2)
    pytest.fail(f"gunicorn not ready in {STARTUP_TIMEOUT}s:\n{server.stderr()}")


@pytest.fixture
def gunicorn(tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    # A leftover from an "earlier run": on_starting must delete it, or the
    # collector would choke on it.
    (metrics_dir / "counter_999999.db").write_bytes(b"garbage from an earlier run")
    server = _start(
        tmp_path,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        LBAPP_DISPLAY_NAME="integration web",
        LBAPP_VERSION="9.9.9-it",
        LBAPP_LOG_LEVEL="INFO",
    )
    try:
        _wait_ready(server)
        yield server
    finally:
        server.stop()


def test_gunicorn_multiprocess_totals(gunicorn):
    baseline = gunicorn.metrics()  # start-up probes already counted; this scrape is not yet
    base = baseline["requests"]
    assert baseline["metrics_mode"] == "multiprocess"
    assert baseline["master_pid"] == gunicorn.process.pid

    paths = ["/", "/health"] * (REQUESTS // 2)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(gunicorn.request, paths))
    assert [status for status, _, _ in results] == [200] * REQUESTS
    for _, headers, _ in results:
        assert headers["X-Backend"] == socket.gethostname()
        assert len(headers["X-Request-ID"]) == 32
        assert headers.get("Server", "gunicorn") == "gunicorn"  # no version

    scrapes = [gunicorn.metrics() for _ in range(SCRAPES)]
    totals = [scrape["requests"]["total"] for scrape in scrapes]
    # The baseline scrape itself, plus the 60 requests.
    assert totals[0] == base["total"] + 1 + REQUESTS
    # Each scrape counts the one before it, whichever worker served either.
    assert totals == [totals[0] + i for i in range(SCRAPES)]

    first = scrapes[0]["requests"]["by_endpoint"]
    assert first["/"] == base["by_endpoint"].get("/", 0) + REQUESTS // 2
    assert first["/health"] == base["by_endpoint"]["/health"] + REQUESTS // 2
    assert first["/metrics"] == base["by_endpoint"].get("/metrics", 0) + 1
    last = scrapes[-1]["requests"]
    assert last["by_endpoint"]["/metrics"] == first["/metrics"] + SCRAPES - 1
    assert last["by_status"] == {"200": last["total"]}

    for scrape in scrapes:
        assert scrape["started_at"] == baseline["started_at"]  # the master's, not the worker's
        assert scrape["master_pid"] == gunicorn.process.pid
        assert scrape["display_name"] == "integration web"
        assert scrape["version"] == "9.9.9-it"

    # Prometheus exposition agrees with the JSON.
    status, headers, body = gunicorn.request("/metrics", {"Accept": "text/plain"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    expected_root = first["/"]
    assert (
        f'lbapp_http_requests_total{{endpoint="/",method="GET",status="200"}} {expected_root}.0'
        in text
    )
    assert 'lbapp_build_info{display_name="integration web",version="9.9.9-it"} 1.0' in text
    status, headers, body = gunicorn.request("/metrics", {"Accept": "application/openmetrics-text"})
    assert status == 200 and body.endswith(b"# EOF\n")

    gunicorn.stop()
    request_lines = [
        json.loads(line)
        for line in gunicorn.stdout().splitlines()
        if line.startswith("{") and '"logger":"lbapp.request"' in line
    ]
    served = [r for r in request_lines if r["path"] in ("/", "/health")]
    pids = {r["pid"] for r in served}
    assert len(pids) > 1, f"all requests went to one worker: {pids}"
    assert gunicorn.process.pid not in pids
    # The response header reaches gunicorn, so an access log format can print it.
    access = (gunicorn.tmp_path / "access.log").read_text()
    assert served[-1]["request_id"] in access
    assert "Traceback" not in gunicorn.stderr()


def test_gunicorn_drain_and_request_id(gunicorn):
    drain = gunicorn.tmp_path / "drain"
    status, headers, _ = gunicorn.request("/health", {"X-Request-ID": "it-req-1"})
    assert (status, headers["X-Request-ID"]) == (200, "it-req-1")
    status, headers, _ = gunicorn.request("/health", {"X-Request-ID": "bad id!"})
    assert status == 200 and headers["X-Request-ID"] != "bad id!"

    drain.touch()
    time.sleep(1.2)  # each worker may cache the last stat() for up to 1 s
    for _ in range(6):
        status, _, body = gunicorn.request("/health")
        assert status == 503
        assert json.loads(body)["status"] == "draining"
    drain.unlink()
    time.sleep(1.2)
    for _ in range(6):
        status, _, body = gunicorn.request("/health")
        assert status == 200
        assert json.loads(body)["status"] == "healthy"


def test_gunicorn_refuses_to_boot_on_bad_config(tmp_path):
    """With the hooks, the master checks the settings before binding or forking."""
    server = _start(tmp_path, LBAPP_PROXY_HOPS="7")
    try:
        code = server.process.wait(timeout=STARTUP_TIMEOUT)
    finally:
        server.stop()
    assert code == 4
    stderr = server.stderr()
    assert stderr.count("lbapp: configuration error: LBAPP_PROXY_HOPS='7'") == 1
    assert "Booting worker" not in stderr
    assert "Listening at" not in stderr
    assert "Traceback" not in stderr


def test_gunicorn_without_hooks_stops_on_worker_config_error(tmp_path):
    """Without the hooks, the worker's exit status 4 makes the master give up."""
    server = _start(tmp_path, workers=1, with_hooks=False, LBAPP_LOG_LEVEL="LOUD")
    try:
        code = server.process.wait(timeout=STARTUP_TIMEOUT)
    finally:
        server.stop()
    assert code != 0
    stderr = server.stderr()
    assert "lbapp: configuration error: LBAPP_LOG_LEVEL='LOUD'" in stderr
    assert "App failed to load" in stderr
    assert "Traceback" not in stderr
