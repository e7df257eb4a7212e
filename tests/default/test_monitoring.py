"""Observability: Prometheus scrapes every layer, alerts fire, logs reach the log server.

Needs a host in the inventory group "monitoring" (the default Molecule scenario and the
lab have one); skipped otherwise. Prometheus is queried from the monitoring host itself
(fixtures mon and prom, in conftest.py beside this file).
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import http, primary_address, wait_until

REMOTE_LOGS = "/var/log/remote"


def query(prom, expr: str) -> dict[str, float]:
    """Instant query -> {instance (or "" without one): value}."""
    return {r["metric"].get("instance", ""): float(r["value"][1]) for r in prom("/api/v1/query", query=expr)["result"]}


def seconds(duration: str) -> float:
    """A Prometheus duration ("2s", "1m30s") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[unit] for n, unit in re.findall(r"(\d+)(ms|s|m|h|d)", duration))


@pytest.fixture(scope="module")
def scrape(mon_name, role_var) -> float:
    """The inventory's scrape interval in seconds: every target is scraped once within it."""
    return seconds(role_var(mon_name, "monitoring_scrape_interval"))


def test_every_target_is_scraped_and_up(prom, inventory, backends, loadbalancers, scrape):
    every_host = set(AnsibleRunner(inventory).get_hosts("all"))

    def all_up():
        targets = prom("/api/v1/targets", state="active")["activeTargets"]
        jobs: dict[str, set] = {}
        for target in targets:
            if target["health"] == "up":
                jobs.setdefault(target["labels"]["job"], set()).add(target["labels"]["instance"])
        return jobs if all(t["health"] == "up" for t in targets) else None

    jobs = wait_until(all_up, 30 + 2 * scrape, "every target to be up")
    assert jobs["lbapp"] == set(backends)
    assert jobs["nginx"] == set(loadbalancers)
    assert jobs["node"] == every_host
    assert query(prom, "min(up)") == {"": 1.0}


def test_requests_through_the_lb_show_up_in_app_and_nginx_metrics(prom, lb, lb_url, scrape):
    app = 'sum(lbapp_http_requests_total{job="lbapp",endpoint="/"})'
    nginx = 'sum(nginx_http_requests_total{job="nginx"})'
    # Wait for a scrape of every backend so that "before" is current.
    time.sleep(scrape + 1)
    app_before, nginx_before = query(prom, app).get("", 0.0), query(prom, nginx)[""]
    requests = 60
    answers = http(lb, lb_url + "/", count=requests)
    assert [a["status"] for a in answers] == [200] * requests
    app_after = wait_until(
        lambda: (v := query(prom, app).get("", 0.0)) >= app_before + requests and v, 18 + 2 * scrape, "the app counters"
    )
    assert app_after == app_before + requests, "the app counted other requests to / than ours"
    time.sleep(scrape + 1)
    assert query(prom, nginx)[""] - nginx_before >= requests


def test_recording_rules_give_one_series_per_backend(prom, backends, scrape):
    for rule in (
        "instance:lbapp_http_requests:rate1m",
        "instance:lbapp_http_errors:ratio_rate1m",
        "instance:lbapp_http_request_duration_seconds:p95_rate1m",
    ):
        # A rate needs two scrapes.
        series = wait_until(lambda r=rule: query(prom, r), 30 + 2 * scrape, rule)
        assert set(series) == set(backends), (rule, series)
    ratios = query(prom, "instance:lbapp_http_errors:ratio_rate1m")
    assert all(value == 0 for value in ratios.values()), ratios


def test_configuration_and_rules_pass_promtool(mon, prom):
    mon.run_expect([0], "promtool check config /etc/prometheus/prometheus.yml")
    out = mon.check_output(
        "promtool check rules /etc/prometheus/rules.d/lbi-alerts.yml /etc/prometheus/rules.d/lbi-recording.yml"
    )
    assert "SUCCESS: 8 rules found" in out and "SUCCESS: 4 rules found" in out, out
    loaded = {r["name"] for g in prom("/api/v1/rules")["groups"] for r in g["rules"]}
    alerts = {"BackendDown", "LoadBalancerDown", "BackendHighErrorRatio", "BackendHighLatency", "BackendUnhealthy"}
    assert alerts | {"HealthCheckerStalled", "FloatingAddressNotHeldOnce"} <= loaded


@pytest.mark.destructive
def test_backend_down_alert_fires_within_its_window(prom, backends, loadbalancers):
    """A stopped backend: its scrape fails (BackendDown) and each load balancer's health checker,
    as Prometheus sees it through the node exporter, takes it out and brings it back."""
    name, host = list(backends.items())[-1]
    healthy = f'lbi_healthcheck_backend_healthy{{job="node",backend="{name}"}}'
    assert query(prom, healthy) == dict.fromkeys(loadbalancers, 1.0)

    def state():
        alerts = prom("/api/v1/alerts")["alerts"]
        return {
            a["state"] for a in alerts if a["labels"]["alertname"] == "BackendDown" and a["labels"]["instance"] == name
        }

    rules = prom("/api/v1/rules", type="alert")["groups"]
    group, window = next((g, r["duration"]) for g in rules for r in g["rules"] if r["name"] == "BackendDown")
    config = yaml.safe_load(prom("/api/v1/status/config")["yaml"])
    job = next(c for c in config["scrape_configs"] if c["job_name"] == "lbapp")
    evaluation = group.get("interval") or seconds(config["global"]["evaluation_interval"])
    # The first failed scrape (an interval plus its timeout), the evaluation that makes it
    # pending, the first evaluation after the window, and a second for polling.
    latest = window + seconds(job["scrape_interval"]) + seconds(job["scrape_timeout"]) + 2 * evaluation + 1
    assert state() == set()
    host.run_expect([0], "systemctl stop lbapp.service")
    stopped = time.monotonic()
    try:
        # Waits longer than `latest`, so that the assertion below, not the wait, holds the bound.
        wait_until(lambda: "firing" in state(), latest + 30, "BackendDown to fire")
        fired_after = time.monotonic() - stopped
        assert query(prom, healthy) == dict.fromkeys(loadbalancers, 0.0)
    finally:
        host.run_expect([0], "systemctl start lbapp.service")
    print(f"\nBackendDown for {name} fired {fired_after:.1f} s after the stop (for: {window:.0f} s, by {latest:.0f} s)")
    assert window <= fired_after <= latest
    wait_until(lambda: state() == set(), 30, "BackendDown to resolve once the backend is back")
    wait_until(lambda: query(prom, healthy) == dict.fromkeys(loadbalancers, 1.0), 30, "the checkers to see it back")


def test_one_request_id_is_found_in_lb_and_backend_logs_on_the_log_server(
    mon, lb, lb_url, backends, names, backend_addresses, backend_ports
):
    request_id = f"trace-{uuid.uuid4().hex}"
    (answer,) = http(lb, lb_url + "/", headers={"X-Request-ID": request_id})
    assert answer["status"] == 200
    assert answer["headers"]["x-request-id"] == request_id
    served_by = answer["headers"]["x-backend"]
    lb_name = lb.check_output("hostname")

    def files():
        found = mon.run(f"grep -rl -- {request_id} {REMOTE_LOGS}").stdout.split()
        wanted = {f"{REMOTE_LOGS}/{lb_name}/nginx-access.log", f"{REMOTE_LOGS}/{served_by}/lbapp.log"}
        return found if wanted <= set(found) else None

    found = wait_until(files, 30, f"{request_id} in the LB's and {served_by}'s logs on the log server")
    print(f"\n{request_id}: {found}")
    # The backend logged it once, in the app's JSON request line (gunicorn's access log is off).
    backend = mon.check_output(f"grep -h -- {request_id} {REMOTE_LOGS}/{served_by}/lbapp.log").splitlines()
    assert len(backend) == 1, backend
    line = json.loads(backend[0][backend[0].index("{") :])
    assert (line["logger"], line["path"], line["status"]) == ("lbapp.request", "/", 200)
    access = mon.check_output(f"grep -h -- {request_id} {REMOTE_LOGS}/{lb_name}/nginx-access.log")
    record = json.loads(access[access.index("{") :])
    assert record["request_id"] == request_id
    # One attempt, at the backend that answered, and within the time the whole request took.
    served = next(n for n, hostname in names.items() if hostname == served_by)
    assert record["status"] == 200 and record["upstream_status"] == "200"
    assert record["upstream_addr"] == f"{backend_addresses[served]}:{backend_ports[served]}"
    # NGINX takes the two times separately, each cut to the millisecond: allow one ms each.
    assert float(record["upstream_response_time"]) <= round(record["request_time"] + 0.002, 3), record


def test_log_server_stores_per_host_and_service_and_rotates(mon, mon_name, role_var, backends, lb):
    hosts = mon.check_output(f"ls {REMOTE_LOGS}").split()
    for host in [*backends.values(), lb]:
        assert host.check_output("hostname") in hosts
    mon.run_expect([0], "logrotate --debug /etc/logrotate.d/lbi-remote")
    port = role_var(mon_name, "logging_port")
    assert mon.socket(f"tcp://{primary_address(mon)}:{port}").is_listening
    assert not mon.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_exporters_listen_only_on_private_addresses(lb, lb_name, backends, mon, mon_name, role_var):
    for name, host in {lb_name: lb, mon_name: mon, **backends}.items():
        address, port = primary_address(host), role_var(name, "node_exporter_port")
        assert host.socket(f"tcp://{address}:{port}").is_listening
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
    port = role_var(lb_name, "nginx_exporter_port")
    assert lb.socket(f"tcp://{primary_address(lb)}:{port}").is_listening
    assert not lb.socket(f"tcp://0.0.0.0:{port}").is_listening
    port = role_var(lb_name, "lb_stub_status_port")
    assert lb.socket(f"tcp://127.0.0.1:{port}").is_listening
    assert not lb.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_app_metrics_are_not_served_on_the_public_lb_port(lb, lb_name, lb_url, role_var):
    (answer,) = http(lb, lb_url + "/metrics", headers={"Accept": "text/plain"})
    assert answer["status"] == 404
    assert "lbapp_http_requests_total" not in answer["body"]
    (status,) = http(lb, f"http://127.0.0.1:{role_var(lb_name, 'lb_stub_status_port')}/stub_status")
    assert status["status"] == 200 and "Active connections" in status["body"]
