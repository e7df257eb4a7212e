"""The load balancer: NGINX proxying to exactly the inventory's backends."""

from __future__ import annotations

import collections
import json
import re
import shlex
import time

import pytest

from helpers import http, servers, wait_until


def test_nginx_running_enabled_and_listening(lb, lb_name, role_var):
    assert lb.service("nginx").is_running
    assert lb.service("nginx").is_enabled
    assert lb.socket(f"tcp://0.0.0.0:{role_var(lb_name, 'lb_listen_port')}").is_listening
    assert not lb.file("/etc/nginx/sites-enabled/default").exists


def test_upstream_lists_exactly_the_inventory_backends_all_in_rotation(lb, backend_addresses, backend_ports):
    listed = {name: (s["address"], s["port"], s["down"]) for name, s in servers(lb).items()}
    assert listed == {name: (address, backend_ports[name], []) for name, address in backend_addresses.items()}


def test_health_checker_runs_sandboxed_and_sees_every_backend(lb, backends):
    service = lb.service("lbi-healthcheck")
    assert service.is_running and service.is_enabled
    props = lb.check_output("systemctl show lbi-healthcheck.service -p ProtectSystem -p NoNewPrivileges -p ProtectHome")
    assert set(props.split()) == {"ProtectSystem=strict", "NoNewPrivileges=yes", "ProtectHome=yes"}
    status = json.loads(lb.file("/run/lbi-healthcheck/status.json").content_string)
    assert set(status["servers"]) == set(backends)
    assert all(s["healthy"] and s["in_rotation"] and s["last"] == "HTTP 200" for s in status["servers"].values())
    assert time.time() - status["last_run_at"] < 5, "the checker has stopped checking"


def test_a_healthy_tier_is_checked_without_a_single_nginx_reload(lb):
    """Every second a check of every backend, and nothing written or reloaded while all pass."""
    workers = "pgrep -d , -P $(systemctl show -p MainPID --value nginx.service)"
    before, status = lb.check_output(workers), json.loads(lb.file("/run/lbi-healthcheck/status.json").content_string)
    time.sleep(6)
    after = json.loads(lb.file("/run/lbi-healthcheck/status.json").content_string)
    assert lb.check_output(workers) == before, "NGINX was reloaded (its workers changed)"
    assert after["reloads"] == status["reloads"]
    assert all(after["servers"][n]["passes"] >= status["servers"][n]["passes"] + 5 for n in after["servers"])


def test_round_robin_spreads_evenly(lb_url, lb, backends):
    answers = http(lb, lb_url + "/", count=30 * len(backends) // 3)
    assert all(a["status"] == 200 for a in answers)
    counts = collections.Counter(a["headers"]["x-backend"] for a in answers)
    print("requests per backend:", dict(counts))
    expected = len(answers) // len(backends)
    assert sorted(counts) == sorted(h.check_output("hostname") for h in backends.values())
    assert set(counts.values()) == {expected}


def test_health_through_the_lb_and_metrics_kept_internal(lb_url, lb, backends, backend_urls):
    (health,) = http(lb, lb_url + "/health")
    assert health["status"] == 200
    assert json.loads(health["body"])["status"] == "healthy"
    # /metrics is for Prometheus on the backends' private addresses, not for the public port.
    for accept in ("application/json", "text/plain"):
        (metrics,) = http(lb, lb_url + "/metrics", headers={"Accept": accept})
        assert metrics["status"] == 404
        assert "lbapp_http_requests_total" not in metrics["body"] and "requests" not in metrics["body"]
    name, host = next(iter(backends.items()))
    # The whole exposition (http() keeps only the first 2000 characters of a body).
    script = (
        "import sys, urllib.request as u; "
        "print(u.urlopen(u.Request(sys.argv[1], headers={'Accept': 'text/plain'})).read().decode())"
    )
    text = host.check_output(f"python3 -c {shlex.quote(script)} {backend_urls[name]}/metrics")
    series = {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert {"lbapp_http_requests_total", "lbapp_posts_received_total"} <= series, sorted(series)


def _root_count(host, url) -> tuple[int, int]:
    (answer,) = http(host, f"{url}/metrics")
    stats = json.loads(answer["body"])
    assert stats["metrics_mode"] == "multiprocess"
    return stats["requests"]["total"], stats["requests"]["by_endpoint"].get("/", 0)


def test_metrics_count_every_request_across_workers(lb_url, lb, backends, backend_urls):
    """Each backend's /metrics counts what all its gunicorn workers served."""
    before = {name: _root_count(host, backend_urls[name]) for name, host in backends.items()}
    answers = http(lb, lb_url + "/", count=12 * len(backends))
    sent = collections.Counter(a["headers"]["x-backend"] for a in answers)
    hostnames = {name: host.check_output("hostname") for name, host in backends.items()}
    for name, host in backends.items():
        total, root = _root_count(host, backend_urls[name])
        # Totals also count /metrics itself (and Prometheus's scrapes, when a monitoring
        # host runs): at least our requests and the first /metrics call.
        assert total - before[name][0] >= sent[hostnames[name]] + 1, name
        assert root - before[name][1] == sent[hostnames[name]], name
        # Asked twice in a row (likely by different workers): the same count for /, and a
        # total that went up, never a per-worker share.
        again, root_again = _root_count(host, backend_urls[name])
        assert root_again == root, name
        assert again >= total + 1, name


def test_page_names_the_backend(lb_url, lb):
    (page,) = http(lb, lb_url + "/")
    assert page["headers"]["content-type"].startswith("text/html")
    assert page["headers"]["x-backend"] in page["body"]


def test_no_version_leaks(lb_url, lb):
    (page,) = http(lb, lb_url + "/")
    assert page["headers"]["server"] == "nginx"


def test_request_id_is_kept_or_created_and_reaches_the_backend(lb_url, lb, backends):
    (answer,) = http(lb, lb_url + "/health", headers={"X-Request-ID": "lbi-test-7f3a"})
    assert answer["headers"]["x-request-id"] == "lbi-test-7f3a"
    served_by = answer["headers"]["x-backend"]
    host = next(h for h in backends.values() if h.check_output("hostname") == served_by)
    log = host.check_output("journalctl -u lbapp.service --no-pager -o cat --since -5min")
    lines = [json.loads(line) for line in log.splitlines() if "lbi-test-7f3a" in line]
    assert len(lines) == 1, f"want one request line for the ID in the backend's journal: {lines}"
    # The client address as NGINX saw it (the request came from the LB's own loopback), taken
    # from X-Forwarded-For: the connection itself came from the LB's network address.
    assert lines[0]["request_id"] == "lbi-test-7f3a" and lines[0]["remote_addr"] == "127.0.0.1", lines
    (fresh,) = http(lb, lb_url + "/health", headers={"X-Request-ID": "bad id with spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", fresh["headers"]["x-request-id"])


# Stands in for the app on a backend's address and port: answers every GET with the
# request headers it received, as a JSON list of [name, value].
HEADER_ECHO = """
import http.server, json, socketserver, sys
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps({"status": "healthy", "headers": list(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", "lbi-header-echo")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""


@pytest.mark.destructive
def test_forwarding_headers_reach_the_backend(lb, lb_url, backends, backend_addresses, backend_ports):
    """What a backend receives from NGINX, seen by a stand-in for the app that echoes it."""
    name, host = list(backends.items())[-1]
    address, port = backend_addresses[name], backend_ports[name]

    def rejoined(after: float) -> bool:
        # Only checks made after the app is back count (the port was free for a moment).
        status = json.loads(lb.file("/run/lbi-healthcheck/status.json").content_string)
        server = status["servers"][name]
        return status["last_run_at"] > after + 3 and server["in_rotation"] and server["last"] == "HTTP 200"

    host.run_expect([0], f"cat > /tmp/lbi-header-echo.py <<'EOF'\n{HEADER_ECHO}\nEOF")
    # The echo takes the port over at once: the health checker sees no failed check.
    host.run_expect(
        [0],
        "systemctl kill --signal=SIGKILL lbapp.service && systemctl stop lbapp.service && "
        f"(nohup setsid python3 /tmp/lbi-header-echo.py {address} {port} >/dev/null 2>&1 </dev/null &)",
    )
    try:
        wait_until(lambda: host.socket(f"tcp://{address}:{port}").is_listening, 10, "the header echo")
        answers = http(lb, lb_url + "/", count=3 * len(backends), headers={"X-Request-ID": "lbi-forwarding-7c1e"})
    finally:
        host.run("pkill -f '[l]bi-header-echo.py'; systemctl start lbapp.service")
        restarted = time.time()
        wait_until(lambda: rejoined(restarted), 30, f"{name} to serve with its app again")
    echoed = [a for a in answers if a["headers"].get("x-backend") == "lbi-header-echo"]
    assert echoed, f"no request reached {name}: {[a['headers'].get('x-backend') for a in answers]}"
    received = {key.lower(): value for key, value in json.loads(echoed[0]["body"])["headers"]}
    print(f"headers {name} received:", received)
    assert received["host"] == "127.0.0.1"
    assert received["x-real-ip"] == "127.0.0.1"
    assert received["x-forwarded-for"] == "127.0.0.1"
    assert received["x-forwarded-proto"] == lb_url.split(":")[0]
    assert received["x-forwarded-host"] == "127.0.0.1"
    assert received["x-request-id"] == "lbi-forwarding-7c1e"


@pytest.mark.destructive
def test_a_stopped_backend_costs_no_failed_get(lb_url, lb, backends):
    name, host = next(iter(backends.items()))
    host.run_expect([0], "systemctl stop lbapp.service")
    try:
        answers = http(lb, lb_url + "/", count=30)
        failed = [a for a in answers if a["status"] != 200]
        print(f"{name} stopped: {len(answers)} requests, {len(failed)} failed")
        assert not failed
        assert host.check_output("hostname") not in {a["headers"]["x-backend"] for a in answers}
    finally:
        host.run_expect([0], "systemctl start lbapp.service")
