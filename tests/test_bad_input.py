"""Bad input fails the play with the variable named, and the running tier keeps serving."""

from __future__ import annotations

import json

import pytest

from conftest import http, run_site

LIVE_FILES = "/etc/nginx/nginx.conf /etc/nginx/conf.d/lbi-upstreams.conf /etc/nginx/conf.d/lbi-site.conf"


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
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v),
)
def test_bad_input_is_rejected_and_the_tier_keeps_serving(inventory, lb, backends, extra_vars, limit, expected):
    before = lb.check_output(f"sha256sum {LIVE_FILES}")
    result = run_site(inventory, extra_vars, limit)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert expected in output, output[-3000:]
    assert lb.check_output(f"sha256sum {LIVE_FILES}") == before, "live NGINX configuration changed"
    answers = http(lb, "http://127.0.0.1:80/health", count=len(backends))
    assert [a["status"] for a in answers] == [200] * len(backends)
