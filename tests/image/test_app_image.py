"""The lbapp container image (app/Dockerfile), run the way the Dockerfile's header documents it.

    .venv/bin/python -m pytest tests/image        (what `make image-test` runs)

The session fixture runs scripts/build-app-image.sh (seconds when nothing changed; IMAGE and
BASE_IMAGE pass through). Each container is named lbi-image-test-<random>, publishes its port on
127.0.0.1 only, and is removed at teardown. Every wait and every command is bounded in time.
The containers check their health every second (--health-interval) instead of the image's 10 s;
the check itself is the image's.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = PROJECT_DIR / "scripts" / "build-app-image.sh"
IMAGE = os.environ.get("IMAGE", "load-balancer-infra/lbapp:latest")
APP_UID = "10001"
WORKERS = 3
# Printable, with characters the page must escape.
DISPLAY_NAME = "image-test <web1> & co"
REQUESTS = 30


def run(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


def get(port: int, path: str, headers: dict[str, str] | None = None) -> Response:
    """One request on a fresh connection to 127.0.0.1 (http.client: no proxy is ever used)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        answer = conn.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        conn.close()


def inspect(name: str, template: str) -> str:
    return run("docker", "inspect", "-f", template, name, timeout=30).stdout.strip()


def wait_for_health(name: str, wanted: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    status = ""
    while time.monotonic() < deadline:
        state = json.loads(inspect(name, "{{json .State}}"))
        if not state.get("Running"):
            logs = run("docker", "logs", "--tail", "30", name, check=False, timeout=30)
            pytest.fail(f"{name} stopped (exit {state.get('ExitCode')}): {logs.stdout}{logs.stderr}")
        status = (state.get("Health") or {}).get("Status", "")
        if status == wanted:
            return
        time.sleep(0.5)
    pytest.fail(f"{name} not {wanted} within {seconds:.0f} s (last status: {status or 'none'})")


def start(*options: str) -> tuple[str, int]:
    """Start the image read-only, with /tmp as its only writable place; return (name, port)."""
    name = f"lbi-image-test-{secrets.token_hex(4)}"
    port = free_port()
    run(
        "docker", "run", "-d", "--name", name,
        "--label", "org.load-balancer-infra.test=image",
        "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,noexec,size=64m",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-p", f"127.0.0.1:{port}:8000",
        "-e", f"LBAPP_DISPLAY_NAME={DISPLAY_NAME}", "-e", f"GUNICORN_WORKERS={WORKERS}",
        "--health-interval", "1s", "--health-start-period", "20s",
        *options, IMAGE,
        timeout=60,
    )  # fmt: skip
    return name, port


def remove(name: str) -> None:
    run("docker", "rm", "-f", "-v", name, timeout=60, check=False)


@pytest.fixture(scope="session")
def image() -> str:
    if run("docker", "info", timeout=30, check=False).returncode != 0:
        pytest.fail("no Docker engine answers (make docker)")
    # The build waits for /tmp/lbi-docker.lock while a Molecule run holds it (bounded too).
    lock_wait = int(os.environ.get("LBI_DOCKER_LOCK_WAIT", "900"))
    env = {**os.environ, "IMAGE": IMAGE, "LBI_DOCKER_LOCK_WAIT": str(lock_wait)}
    result = subprocess.run(
        [str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=lock_wait + 300, env=env, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{BUILD_SCRIPT.name} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return IMAGE


@pytest.fixture(scope="module")
def container(image):
    name, port = start()
    try:
        wait_for_health(name, "healthy")
        yield name, port
    finally:
        remove(name)


def test_image_metadata(image):
    config = json.loads(run("docker", "image", "inspect", "-f", "{{json .Config}}", image).stdout)
    assert config["User"] == f"{APP_UID}:{APP_UID}"
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][1:] == ["/opt/lbapp/venv/bin/python", "-I", "/etc/lbapp/healthcheck.py"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert env["LBAPP_DRAIN_FILE"].startswith("/tmp/")


def test_index_shows_the_display_name(container):
    _, port = container
    answer = get(port, "/", {"Accept": "text/html"})
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "image-test &lt;web1&gt; &amp; co" in answer.body.decode()
    assert answer.headers["X-Backend"]


def test_health(container):
    _, port = container
    answer = get(port, "/health")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    health = answer.json()
    assert health["status"] == "healthy"
    assert health["display_name"] == DISPLAY_NAME


def test_metrics_total_every_worker(container):
    """N requests, then one scrape by each worker at once: every one of them counts all N."""
    _, port = container
    before = get(port, "/metrics").json()["requests"]["by_endpoint"].get("/", 0)
    for _ in range(REQUESTS):
        assert get(port, "/").status == 200
    # Each sync worker takes one of these connections and waits for its request, so the
    # scrapes below are answered by WORKERS different processes.
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(WORKERS)]
    try:
        for conn in conns:
            conn.connect()
        time.sleep(0.5)
        for conn in conns:
            conn.request("GET", "/metrics", headers={"Accept": "application/json"})
        scrapes = [json.loads(conn.getresponse().read()) for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    assert len({scrape["pid"] for scrape in scrapes}) == WORKERS
    assert {scrape["metrics_mode"] for scrape in scrapes} == {"multiprocess"}
    for scrape in scrapes:
        assert scrape["requests"]["by_endpoint"]["/"] == before + REQUESTS
        assert scrape["requests"]["total"] >= REQUESTS

    text = get(port, "/metrics", {"Accept": "text/plain"})
    assert text.status == 200
    samples = [line for line in text.body.decode().splitlines() if line.startswith("lbapp_http_requests_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in samples) >= REQUESTS + WORKERS
    assert sum(float(line.rsplit(" ", 1)[1]) for line in samples if 'endpoint="/"' in line) == before + REQUESTS


def test_runs_as_non_root(container):
    name, _ = container
    assert run("docker", "exec", name, "id", "-u").stdout.strip() == APP_UID
    processes = run("docker", "top", name, "-eo", "pid,uid,args").stdout.splitlines()[1:]
    gunicorns = [line.split(None, 2) for line in processes if "gunicorn" in line]
    assert len(gunicorns) == WORKERS + 1  # the master and its workers
    assert {uid for _, uid, _ in gunicorns} == {APP_UID}


def test_root_fs_is_read_only(container):
    name, _ = container
    assert inspect(name, "{{.HostConfig.ReadonlyRootfs}}") == "true"
    # As root, so that only the read-only mount can refuse it.
    for path in ("/lbapp-write-test", "/opt/lbapp/venv/lbapp-write-test", "/etc/lbapp/gunicorn.conf.py"):
        attempt = run("docker", "exec", "-u", "0", name, "sh", "-c", f": > {path}", check=False)
        assert attempt.returncode != 0
        assert "Read-only file system" in attempt.stderr
    # The tmpfs holds the runtime files, and pip is not in the image.
    listing = run("docker", "exec", name, "ls", "/tmp/lbapp/metrics").stdout.split()
    assert any(entry.startswith("counter_") for entry in listing)
    assert run("docker", "exec", name, "python", "-m", "pip", "--version", check=False).returncode != 0


def test_drain_turns_the_container_unhealthy(container):
    name, port = container
    run("docker", "exec", name, "touch", "/tmp/lbapp/drain")
    try:
        deadline = time.monotonic() + 5
        while get(port, "/health").status != 503:
            assert time.monotonic() < deadline, "/health still 200 5 s after the drain file appeared"
            time.sleep(0.2)
        wait_for_health(name, "unhealthy", seconds=20)
    finally:
        run("docker", "exec", name, "rm", "-f", "/tmp/lbapp/drain")
    wait_for_health(name, "healthy", seconds=20)


def test_bad_setting_stops_at_start(image):
    result = run(
        "docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--network", "none",
        "-e", "LBAPP_PROXY_HOPS=9", image,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 4
    assert "lbapp: configuration error: LBAPP_PROXY_HOPS='9'" in result.stderr


def test_stops_gracefully_on_sigterm(image):
    name, _ = start()
    try:
        wait_for_health(name, "healthy")
        began = time.monotonic()
        run("docker", "stop", "-t", "25", name, timeout=60)
        assert time.monotonic() - began < 10
        assert inspect(name, "{{.State.ExitCode}}") == "0"
        assert "Shutting down: Master" in run("docker", "logs", name).stderr
    finally:
        remove(name)
