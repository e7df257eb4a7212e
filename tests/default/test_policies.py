"""Balancing policies driven from inventory, proven by how requests really spread.

Each test re-runs site.yml's lb part on the load balancers with other variables (extra vars
and per-host vars from a second inventory source), measures, and the module
restores the inventory's own configuration at the end.
"""

from __future__ import annotations

import collections
import json
import re
import textwrap

import pytest

from helpers import LB_GROUP, http, python, run_site

# Each test converges the load balancers with another policy and back.
pytestmark = pytest.mark.destructive


@pytest.fixture(scope="module")
def configure(inventory, lb):
    """configure(extra_vars, host_vars) applies a policy to the load balancers."""

    def apply(extra_vars: dict | None = None, host_vars: dict | None = None):
        result = run_site(inventory, extra_vars or {}, LB_GROUP, host_vars, tags="lb")
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]

    yield apply
    apply()  # back to the inventory's own settings


def spread(lb, url: str, count: int, headers: dict | None = None) -> collections.Counter:
    answers = http(lb, url, count=count, headers=headers)
    assert [a["status"] for a in answers] == [200] * count
    return collections.Counter(a["headers"]["x-backend"] for a in answers)


def backend_vars(backends, **per_host) -> dict:
    """Per-host vars for the backends group: per_host maps inventory name -> vars."""
    return {"backends": {"hosts": {name: per_host.get(name, {}) for name in backends}}}


def test_weights_share_traffic_in_proportion(configure, lb, lb_url, backends, names):
    first, *rest = list(backends)
    configure(host_vars=backend_vars(backends, **{first: {"lb_weight": 3}}))
    counts = spread(lb, lb_url + "/", 500)
    total_weight = 3 + len(rest)
    print("weights 3:1:1 over 500 requests:", dict(counts))
    assert abs(counts[names[first]] / 500 - 3 / total_weight) <= 0.05
    for name in rest:
        assert abs(counts[names[name]] / 500 - 1 / total_weight) <= 0.05


# Runs on the load balancer: `busy` requests at once (those sent to a frozen backend hang
# until NGINX's read timeout and its retry), then, while they hang, `quick` requests one by
# one. Prints [status, backend, seconds] of each.
BUSY_THEN_QUICK = textwrap.dedent(
    """
    import json, ssl, sys, threading, time, urllib.error, urllib.request
    url, busy, quick = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ctx = ssl._create_unverified_context()

    def get():
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=90, context=ctx) as resp:
                resp.read()
                status, backend = resp.status, resp.headers.get("X-Backend")
        except Exception as err:
            status, backend = getattr(err, "code", 0), None
        return [status, backend, round(time.monotonic() - start, 3)]

    held = []
    threads = [threading.Thread(target=lambda: held.append(get())) for _ in range(busy)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    answers = [get() for _ in range(quick)]
    for thread in threads:
        thread.join()
    print(json.dumps({"held": held, "quick": answers}))
    """
)


@pytest.mark.parametrize("algorithm", ["least_conn", "random_two_least_conn"])
def test_least_connection_algorithms_spread_and_avoid_a_busy_backend(configure, lb, lb_url, backends, algorithm):
    """Round robin would send every third quick request to the frozen backend, where it
    would hang for the read timeout; these algorithms pick a backend with fewer requests
    in flight. The active health checker is off, as it would take the frozen one out."""
    configure({"lb_algorithm": algorithm, "lb_health_check_enabled": False})
    counts = spread(lb, lb_url + "/", 90)
    print(f"{algorithm} over 90 requests:", dict(counts))
    assert len(counts) == len(backends)
    assert min(counts.values()) >= 90 // len(backends) // 3
    frozen = backends[next(iter(backends))]
    frozen.run_expect([0], "systemctl kill --signal=SIGSTOP lbapp.service")
    try:
        result = json.loads(python(lb, BUSY_THEN_QUICK, lb_url + "/", 3 * len(backends), 20))
    finally:
        frozen.run_expect([0], "systemctl kill --signal=SIGCONT lbapp.service")
    held, quick = max(seconds for _, _, seconds in result["held"]), result["quick"]
    print(f"{algorithm}, one backend frozen: slowest held request {held:.1f} s, quick ones {quick}")
    assert [a for a in result["held"] if a[0] != 200] == [], result["held"]
    assert held >= 2, "no request was held by the frozen backend, so the quick ones prove nothing"
    assert [a for a in quick if a[0] != 200 or a[2] >= 1] == [], quick


def test_ip_hash_keeps_one_client_on_one_backend(configure, lb, lb_url):
    configure({"lb_algorithm": "ip_hash"})
    counts = spread(lb, lb_url + "/", 30)
    print("ip_hash, one client, 30 requests:", dict(counts))
    assert len(counts) == 1


def test_hash_on_a_key_is_stable_per_key_and_spreads_keys(configure, lb, lb_url, backends):
    configure({"lb_algorithm": "hash", "lb_hash_key": "$request_uri", "lb_hash_consistent": True})
    placement = {}
    for key in range(40):
        counts = spread(lb, f"{lb_url}/?user={key}", 3)
        assert len(counts) == 1, f"key {key} moved between backends: {counts}"
        placement[key] = next(iter(counts))
    per_backend = collections.Counter(placement.values())
    print("hash $request_uri consistent, 40 keys:", dict(per_backend))
    assert len(per_backend) == len(backends)


def test_backup_takes_over_only_when_every_primary_is_down(configure, lb, lb_url, backends, names):
    *primaries, spare = list(backends)
    configure(host_vars=backend_vars(backends, **{spare: {"lb_backup": True}}))
    assert names[spare] not in spread(lb, lb_url + "/", 30)
    for name in primaries:
        backends[name].run_expect([0], "systemctl stop lbapp.service")
    try:
        counts = spread(lb, lb_url + "/", 20)
        print("all primaries down:", dict(counts))
        assert counts == {names[spare]: 20}
    finally:
        for name in primaries:
            backends[name].run_expect([0], "systemctl start lbapp.service")


def test_drained_backend_gets_no_new_requests_but_keeps_running(configure, lb, lb_url, backends, names, backend_urls):
    drained = list(backends)[1]
    configure(host_vars=backend_vars(backends, **{drained: {"lb_drain": True}}))
    counts = spread(lb, lb_url + "/", 60)
    print(f"{drained} drained:", dict(counts))
    assert names[drained] not in counts
    assert backends[drained].service("lbapp.service").is_running
    (direct,) = http(backends[drained], f"{backend_urls[drained]}/health")
    assert direct["status"] == 200


def _cookie(answer) -> str:
    match = re.match(r"lbi_route=([0-9a-f]{32});", answer["headers"].get("set-cookie", ""))
    assert match, answer["headers"]
    return match.group(1)


def test_sticky_sessions_keep_clients_and_remap_only_the_removed_backends(configure, lb, lb_url, backends, names):
    configure({"lb_algorithm": "sticky"})
    # A new client gets a cookie and keeps its backend while it carries it.
    (first,) = http(lb, lb_url + "/")
    cookie = _cookie(first)
    assert "HttpOnly" in first["headers"]["set-cookie"] and "SameSite=Lax" in first["headers"]["set-cookie"]
    if lb_url.startswith("https"):
        assert "Secure" in first["headers"]["set-cookie"]
    counts = spread(lb, lb_url + "/", 20, headers={"Cookie": f"lbi_route={cookie}"})
    assert counts == {first["headers"]["x-backend"]: 20}
    # Clients without the cookie are spread.
    clients = {}
    for answer in http(lb, lb_url + "/", count=90):
        clients[_cookie(answer)] = answer["headers"]["x-backend"]
    per_backend = collections.Counter(clients.values())
    print("90 new sticky clients:", dict(per_backend))
    assert len(per_backend) == len(backends) and min(per_backend.values()) >= 90 // len(backends) // 3
    # Remove one backend from the upstream: only its clients move.
    removed = list(backends)[-1]
    kept = [name for name in backends if name != removed]
    configure(
        {"lb_algorithm": "sticky", "lb_backend_group": "sticky_kept"},
        {"sticky_kept": {"hosts": {name: {} for name in kept}}},
    )
    moved_to: collections.Counter = collections.Counter()
    for cookie_value, before in clients.items():
        # Twice: a client that moved stays on its new backend too.
        answers = http(lb, lb_url + "/", count=2, headers={"Cookie": f"lbi_route={cookie_value}"})
        after = {answer["headers"]["x-backend"] for answer in answers}
        assert all("set-cookie" not in answer["headers"] for answer in answers)
        assert len(after) == 1, f"a client of {before} now alternates between {after}"
        if before == names[removed]:
            moved_to[after.pop()] += 1
        else:
            assert after == {before}, f"a client of {before} moved to {after}"
    print(f"{removed} removed: its {per_backend[names[removed]]} clients moved to {dict(moved_to)}")
    assert names[removed] not in moved_to


def test_dead_backend_leaves_rotation_after_one_failure(configure, lb, lb_url, backends, backend_urls):
    """NGINX's own passive check, alone: the active health checker would take the backend out too."""
    configure({"lb_health_check_enabled": False})
    assert not lb.service("lbi-healthcheck").is_running
    victim = next(iter(backends))
    upstream = backend_urls[victim]
    lb.run("truncate -s 0 /var/log/nginx/error.log")
    backends[victim].run_expect([0], "systemctl stop lbapp.service")
    try:
        answers = http(lb, lb_url + "/", count=30)
        assert [a["status"] for a in answers] == [200] * 30
        log = lb.file("/var/log/nginx/error.log").content_string
        attempts = len(re.findall(rf'connect\(\) failed .*upstream: "{re.escape(upstream)}', log))
        print(f"{victim} down: 30 requests, all 200, {attempts} attempt(s) on it (max_fails=1, fail_timeout=5s)")
        assert 1 <= attempts <= 2
    finally:
        backends[victim].run_expect([0], "systemctl start lbapp.service")
