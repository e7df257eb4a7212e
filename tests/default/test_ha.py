"""The pair of load balancers behind one floating address (keepalived): exactly one holds it
and answers there, both serve the same certificate and upstream, and Prometheus's
FloatingAddressNotHeldOnce alert stays quiet until two hold it (a frozen master: split brain).

Skipped without a floating address (keepalived_vip_addresses) and two load balancers. Requests
to the floating address come from another tier host: the address lives on the tier's network.
"""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import BACKEND_GROUP, MONITORING_GROUP, holders, http, python, servers, wait_until

# The certificate a TLS listener presents, as PEM; run on the load balancer itself.
PRESENTED = "import ssl, sys; print(ssl.get_server_certificate(('127.0.0.1', int(sys.argv[1]))))"
# What NGINX reads: the upstream, the site (limits, TLS, headers) and the main file.
RENDERED = ("/etc/nginx/conf.d/lbi-upstreams.conf", "/etc/nginx/conf.d/lbi-site.conf", "/etc/nginx/nginx.conf")


@pytest.fixture(scope="module")
def vip(vip, loadbalancers) -> str:
    """tests/conftest.py's floating address; these tests need it on two load balancers."""
    if vip is None or len(loadbalancers) < 2:
        pytest.skip("no floating address (keepalived_vip_addresses) on two load balancers")
    return vip


@pytest.fixture(scope="module")
def client(inventory):
    """A tier host that is not a load balancer: it reaches the floating address on the network."""
    runner = AnsibleRunner(inventory)
    name = (runner.get_hosts(MONITORING_GROUP) or runner.get_hosts(BACKEND_GROUP))[0]
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)


def sha256(host, path: str) -> str:
    return host.check_output(f"sha256sum {path}").split()[0]


def test_exactly_one_load_balancer_holds_the_address_and_answers_there(loadbalancers, vip, client):
    held = wait_until(lambda: holders(loadbalancers, vip), 30, f"a load balancer holding {vip}")
    answers = http(client, f"https://{vip}/", 6)
    print(f"{vip} held by {held}; statuses {[a['status'] for a in answers]}")
    assert len(held) == 1
    assert [a["status"] for a in answers] == [200] * 6
    assert len({a["headers"]["x-backend"] for a in answers}) > 1, "the requests spread over the backends"


def test_both_load_balancers_serve_one_certificate_and_key(loadbalancers, role_var, vip):
    if not role_var(next(iter(loadbalancers)), "lb_tls_enabled"):
        pytest.skip("TLS is off (lb_tls_enabled)")
    presented = {name: python(host, PRESENTED, role_var(name, "lb_tls_port")) for name, host in loadbalancers.items()}
    fingerprints = {name: hashlib.sha256(pem.encode()).hexdigest()[:16] for name, pem in presented.items()}
    print(f"certificate sha256 (PEM) per load balancer: {fingerprints}")
    assert len(set(presented.values())) == 1, fingerprints
    keys = {name: host.file("/etc/nginx/tls/lbi.key") for name, host in loadbalancers.items()}
    assert {name: (k.mode, k.user) for name, k in keys.items()} == dict.fromkeys(keys, (0o600, "root"))
    assert len({sha256(host, "/etc/nginx/tls/lbi.key") for host in loadbalancers.values()}) == 1


def test_both_load_balancers_route_to_the_same_upstream_with_the_same_limits(loadbalancers, vip):
    upstreams = {name: servers(host) for name, host in loadbalancers.items()}
    first = next(iter(upstreams.values()))
    print(f"upstream servers on each: {sorted(first)}")
    assert all(state == first for state in upstreams.values()), json.dumps(upstreams, indent=1)
    for path in RENDERED:
        digests = {name: sha256(host, path) for name, host in loadbalancers.items()}
        assert len(set(digests.values())) == 1, (path, digests)


@pytest.mark.destructive
def test_split_brain_alert_fires_only_while_two_hold_the_address(loadbalancers, vip, client, prom):
    def value(expr: str) -> list:
        return prom("/api/v1/query", query=expr)["result"]

    def firing() -> bool:
        return bool(value('ALERTS{alertname="FloatingAddressNotHeldOnce",alertstate="firing"}'))

    held = wait_until(lambda: value('sum(lbi_vrrp_master{job="node"}) == 1'), 60, "Prometheus seeing one holder")
    assert held and not firing()
    master = holders(loadbalancers, vip)[0]
    lb = loadbalancers[master]
    # A frozen master (a paused VM, a hung daemon) keeps the address but sends no adverts.
    lb.run_expect([0], "systemctl kill --signal=SIGSTOP keepalived.service")
    try:
        start = time.monotonic()
        both = wait_until(lambda: len(holders(loadbalancers, vip)) == 2, 30, f"a second holder of {vip}")
        took_over = time.monotonic() - start
        wait_until(firing, 90, "FloatingAddressNotHeldOnce firing")
        fired = time.monotonic() - start
    finally:
        lb.run_expect([0], "systemctl kill --signal=SIGCONT keepalived.service")
    wait_until(lambda: len(holders(loadbalancers, vip)) == 1, 30, f"one holder of {vip} again")
    wait_until(lambda: not firing(), 90, "FloatingAddressNotHeldOnce resolved")
    resolved = time.monotonic() - start
    answers = http(client, f"https://{vip}/", 3)
    print(
        f"{master} frozen: a second holder after {took_over:.1f} s, alert firing after {fired:.1f} s, "
        f"resolved {resolved:.1f} s after the freeze; now held by {holders(loadbalancers, vip)}"
    )
    assert both and [a["status"] for a in answers] == [200] * 3
