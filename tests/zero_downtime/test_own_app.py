"""Another WSGI app behind the tier: tests/apps/hello, deployed by the same roles, under load.

Runs after test_operations.py, on a tier that serves lbapp, and leaves it serving lbapp again.
hello has nothing of lbapp's: a plain WSGI callable, its own health path and release key, no
metrics, hooks or drain file. It runs beside lbapp (its own unit, user and port), so the load
balancers move from one app to the other with a reload. POSTs reach hello, which keeps no
record of them, so only the GETs are judged here.
"""

from __future__ import annotations

import json

from helpers import BACKEND_GROUP, LB_GROUP, PROJECT_DIR, http
from zero_downtime.support import assert_no_failure, playbook

# What a user of another app puts in group_vars/all (README, "Deploy your own app").
HELLO = {
    "backend_app_name": "hello",
    "backend_app_src": str(PROJECT_DIR / "tests" / "apps" / "hello"),
    "backend_wsgi_app": "hello_wsgi:app",
    "backend_port": 8001,
    "backend_health_path": "/healthz",
    "backend_health_release_key": "release",
    "backend_release_env": "HELLO_RELEASE",
    "backend_drain_file_env": None,
    "backend_prometheus_multiproc": False,
    "backend_gunicorn_hooks": None,
    "backend_app_env": {"HELLO_NAME": "{{ ansible_facts['hostname'] }}"},
    "backend_release": "1.0.0",
}
# The hosts are prepared already: only the app and the load balancers change.
TIER = ("--limit", f"{BACKEND_GROUP}:{LB_GROUP}", "--skip-tags", "base,node_exporter,logging")


def answers(lb, lb_url, count: int) -> list[dict]:
    return http(lb, lb_url + "/", count)


def test_another_wsgi_app_is_deployed_and_rolled_out_without_a_failed_request(
    load, lb, lb_url, inventory, backends, names, backend_addresses
):
    with load("another WSGI app (tests/apps/hello) deployed beside lbapp, the load balancers moved to it") as run:
        deployed = playbook(inventory, "site.yml", HELLO, TIER)
        summary = run.stop()
    assert deployed.returncode == 0, deployed.stdout[-4000:]
    assert_no_failure(summary)
    served = answers(lb, lb_url, 3 * len(backends))
    assert {a["status"] for a in served} == {200}, served
    assert {a["body"] for a in served} == {f"hello from {name}\n" for name in names.values()}, served
    for name, host in backends.items():
        (health,) = http(host, f"http://{backend_addresses[name]}:{HELLO['backend_port']}/healthz")
        assert json.loads(health["body"]) == {"ok": True, "release": "1.0.0"}, (name, health)
        # lbapp's own switches are off for it: no metrics directory, no drain file.
        environment = host.check_output("systemctl show -p Environment --value hello.service")
        assert "PROMETHEUS_MULTIPROC_DIR" not in environment, environment

    new = {**HELLO, "backend_release": "2.0.0"}
    with load("rolling update of the other app to 2.0.0") as run:
        rolled = playbook(inventory, "rolling_update.yml", new)
        summary = run.stop()
    assert rolled.returncode == 0, rolled.stdout[-4000:]
    assert_no_failure(summary)
    for name in backends:
        assert f"{name}: release 2.0.0, HTTP 200, " in rolled.stdout, rolled.stdout[-3000:]
        assert summary["backends"].get(names[name]), f"{name} served nothing during the rollout"

    # Back to lbapp, which kept running on its own port all along.
    with load("the load balancers moved back to lbapp") as run:
        restored = playbook(inventory, "site.yml", {}, ("--limit", LB_GROUP))
        summary = run.stop()
    assert restored.returncode == 0, restored.stdout[-4000:]
    assert_no_failure(summary)
    for host in backends.values():
        host.run_expect([0], "systemctl disable --now hello.service")
    assert not any(a["body"].startswith("hello from") for a in answers(lb, lb_url, len(backends)))
