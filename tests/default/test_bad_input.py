"""Bad input fails the play with the variable named, and the running tier keeps serving."""

from __future__ import annotations

import json

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import http, run_site

LIVE_FILES = (
    "/etc/nginx/nginx.conf /etc/nginx/conf.d/lbi-upstreams.conf /etc/nginx/conf.d/lbi-site.conf "
    "/etc/nginx/lbi/servers.conf /etc/load-balancer-infra/healthcheck.json"
)


@pytest.mark.parametrize(
    "extra_vars,limit,expected",
    [
        ({"lb_algorithm": "fastest"}, "loadbalancers", "lb_algorithm"),
        ({"lb_weight": -1}, "loadbalancers", "lb_weight=-1"),
        ({"lb_weight": 0}, "loadbalancers", "lb_weight=0"),
        ({"lb_backup": "false"}, "loadbalancers", "lb_backup=false"),
        ({"lb_backup": True, "lb_algorithm": "ip_hash"}, "loadbalancers", "lb_backup is true"),
        ({"lb_drain": True}, "loadbalancers", "lb_drain=true"),
        ({"lb_listen_port": 70000}, "loadbalancers", "lb_listen_port=70000"),
        ({"lb_client_max_body_size": "lots"}, "loadbalancers", "lb_client_max_body_size=lots"),
        # Passes every check of the role but not NGINX's own: caught by nginx -t on the staged copy.
        (
            {"lb_algorithm": "hash", "lb_hash_key": "$no_such_variable"},
            "loadbalancers",
            'unknown "no_such_variable" variable',
        ),
        ({"backend_port": 70000}, "backends", "backend_port=70000"),
        ({"backend_worker_class": "eventlet"}, "backends", "backend_worker_class"),
        ({"backend_release": "1.0 beta"}, "backends", "backend_release"),
        (
            {"lb_tls_private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
            "loadbalancers",
            "lb_tls_certificate and lb_tls_private_key must be given together (certificate missing",
        ),
        ({"lb_tls_protocols": ["TLSv1.1", "TLSv1.2"]}, "loadbalancers", "lb_tls_protocols"),
        ({"lb_algorithm": "sticky", "lb_backup": True}, "loadbalancers", "lb_algorithm=sticky"),
        ({"lb_rate_limit_rate": 0}, "loadbalancers", "lb_rate_limit_rate=0"),
        ({"lb_stub_status_port": 80}, "loadbalancers", "lb_stub_status_port=80"),
        ({"lb_access_log_buffer": "lots"}, "loadbalancers", "lb_access_log_buffer=lots"),
        # A retry budget shorter than a read timeout: a timed-out request would never move on.
        ({"lb_proxy_next_upstream_timeout": 3}, "loadbalancers", "lb_proxy_next_upstream_timeout=3 must be 0"),
        ({"lb_health_check_timeout": 1}, "loadbalancers", "lb_health_check_timeout=1 must be more than 0 and shorter"),
        ({"node_exporter_port": 0}, "loadbalancers", "node_exporter_port=0"),
        ({"nginx_exporter_scrape_uri": "stub_status"}, "loadbalancers", "nginx_exporter_scrape_uri=stub_status"),
        (
            {"logging_files_by_group": {"loadbalancers": [{"path": "relative.log", "tag": "x"}]}},
            "loadbalancers",
            "logging_files_by_group=",
        ),
        ({"monitoring_alert_error_ratio": 5}, "monitoring", "monitoring_alert_error_ratio=5"),
        ({"monitoring_scrape_interval": "often"}, "monitoring", "monitoring_scrape_interval=often"),
        ({"logging_rotate_count": 0}, "monitoring", "logging_rotate_count=0"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v),
)
def test_bad_input_is_rejected_and_the_tier_keeps_serving(inventory, lb, backends, extra_vars, limit, expected):
    if not AnsibleRunner(inventory).get_hosts(limit):
        pytest.skip(f"no host in group {limit}")
    before = lb.check_output(f"sha256sum {LIVE_FILES}")
    result = run_site(inventory, extra_vars, limit)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert expected in output, output[-3000:]
    assert lb.check_output(f"sha256sum {LIVE_FILES}") == before, "live NGINX configuration changed"
    answers = http(lb, "http://127.0.0.1:80/health", count=len(backends))
    assert [a["status"] for a in answers] == [200] * len(backends)


def test_a_configuration_promtool_rejects_leaves_prometheus_as_it_was(inventory):
    """Passes the role's own checks, but not Prometheus's: caught before the live file changes."""
    names = AnsibleRunner(inventory).get_hosts("monitoring")
    if not names:
        pytest.skip("no host in group monitoring")
    mon = testinfra.get_host(f"ansible://{names[0]}", ansible_inventory=inventory)
    live = "/etc/prometheus/prometheus.yml /etc/prometheus/rules.d/lbi-alerts.yml /etc/default/prometheus"
    before = mon.check_output(f"sha256sum {live}")
    pid = mon.check_output("systemctl show -p MainPID --value prometheus.service")
    # A scrape timeout longer than the interval is valid syntax but an invalid configuration.
    result = run_site(inventory, {"monitoring_scrape_timeout": "5m"}, "monitoring")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "scrape timeout greater than scrape interval" in output, output[-3000:]
    assert mon.check_output(f"sha256sum {live}") == before, "live Prometheus configuration changed"
    assert mon.check_output("systemctl show -p MainPID --value prometheus.service") == pid
    assert mon.service("prometheus").is_running
