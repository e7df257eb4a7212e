"""Operations under continuous load: rolling updates, LB reloads, a broken release, scaling.

Run by the Molecule scenario ``zero-downtime`` after test_faults.py (see its docstring for
running it by hand). They run in file order and each leaves the tier serving for the next
one. Every step runs every kind of client (see support.py) and checks that no idempotent
request failed, none took longer than SLOWEST_ALLOWED seconds, and no POST was executed twice.
"""

from __future__ import annotations

import subprocess
import time

import testinfra

from helpers import LB_GROUP, PROJECT_DIR, http, servers, wait_until
from zero_downtime.support import (
    assert_no_failure,
    assert_posts_executed_once,
    health,
    longest_absence,
    out_of_rotation,
    playbook,
    seconds_served,
    served_at_end,
)

NEW_RELEASE = "2.0.0"


# --- rolling updates ---------------------------------------------------------------------


def test_rolling_update_to_a_new_release_costs_no_request(load, lb, inventory, backends, backend_urls, all_backends):
    with load(f"rolling update of every backend to {NEW_RELEASE}") as run:
        result = playbook(inventory, "rolling_update.yml", {"backend_release": NEW_RELEASE})
        summary = run.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert_no_failure(summary)
    assert_posts_executed_once(all_backends, run)
    for name, host in backends.items():
        answer = health(host, name, backend_urls)
        assert answer["http"] == 200 and answer["version"] == NEW_RELEASE, (name, answer)
        assert f"{name}: release {NEW_RELEASE}, healthy, " in result.stdout
    assert out_of_rotation(lb) == {}


# --- load balancer reloads ---------------------------------------------------------------


# An HSTS max-age no inventory is likely to set: what the reload test changes.
CHANGED_MAX_AGE = 4321


def hsts_max_age(lb, lb_url) -> int:
    """The max-age of the Strict-Transport-Security header the load balancer sends, 0 without one."""
    (answer,) = http(lb, lb_url + "/")
    assert answer["status"] == 200, answer
    header = answer["headers"].get("strict-transport-security", "max-age=0")
    return int(header.split(";")[0].removeprefix("max-age="))


def test_lb_reloads_cost_no_request_and_rollouts_leave_nothing_behind(
    load, lb, loadbalancers, lb_url, inventory, all_backends
):
    """A config change through site.yml, then bare reloads, all under load.

    The rollout before left nothing behind (no server out of rotation), and site.yml keeps
    the upstream state as it is. The change, an HSTS header, stays until the next site.yml
    run (scaling out) renders the inventory's settings again.
    """
    before = servers(lb)
    assert out_of_rotation(lb) == {}
    assert hsts_max_age(lb, lb_url) != CHANGED_MAX_AGE
    with load("LB reloads: a config change through site.yml, then 5 bare reloads") as run:
        changed = playbook(inventory, "site.yml", {"lb_hsts_max_age": CHANGED_MAX_AGE}, args=("--limit", LB_GROUP))
        for _ in range(5):
            for host in loadbalancers.values():  # whichever holds the floating address
                host.run_expect([0], "systemctl reload nginx.service")
            time.sleep(0.5)
        result = run.stop()
    assert changed.returncode == 0, changed.stdout[-3000:]
    assert_no_failure(result)
    assert_posts_executed_once(all_backends, run)
    assert hsts_max_age(lb, lb_url) == CHANGED_MAX_AGE
    assert servers(lb) == before


# --- a rollout that fails --------------------------------------------------------------


def test_a_broken_release_stops_at_the_first_backend(
    load, lb, inventory, backends, names, backend_urls, all_backends, tmp_path
):
    # A release whose code cannot start: importing the WSGI module raises.
    app = tmp_path / "app"
    subprocess.run(["cp", "-r", str(PROJECT_DIR / "app"), str(app)], check=True, capture_output=True, timeout=60)
    subprocess.run(["rm", "-rf", str(app / ".venv")], check=True)
    with (app / "src" / "lbapp" / "wsgi.py").open("a") as handle:
        handle.write('\nraise RuntimeError("this release is broken on purpose")\n')
    first, *others = list(backends)
    untouched = {name: health(backends[name], name, backend_urls) for name in others}
    with load("rolling update to a release that cannot start") as run:
        result = playbook(
            inventory,
            "rolling_update.yml",
            {"backend_release": "3.0.0", "backend_app_src": str(app), "backend_health_timeout": 10},
        )
        summary = run.stop()
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"Rollout stopped at {first}" in output, output[-4000:]
    assert_no_failure(summary)
    assert_posts_executed_once(all_backends, run)
    # Out because the rollout took it out; the health checks may have noticed the failed start too.
    assert "operator" in out_of_rotation(lb).get(first, []), out_of_rotation(lb)
    assert set(out_of_rotation(lb)) == {first}
    for name in others:
        now = health(backends[name], name, backend_urls)
        # Never touched: same release, same process start.
        assert now["http"] == 200 and now["version"] == NEW_RELEASE, (name, now)
        assert now["uptime_seconds"] > untouched[name]["uptime_seconds"], (name, now, untouched[name])
    assert longest_absence(summary, names[first]) >= 3

    # Recovery: roll the good release out to that backend again, keeping it out of rotation
    # for now (its own lb_drain: true is respected); site.yml puts it back (scale-out test).
    drained = {"backends": {"hosts": {first: {"lb_drain": True}}}}
    with load("recovery: the good release rolled out again to the failed backend, kept drained") as run:
        fixed = playbook(inventory, "rolling_update.yml", {"backend_release": NEW_RELEASE}, ("--limit", first), drained)
        summary = run.stop()
    assert fixed.returncode == 0, fixed.stdout[-4000:]
    assert_no_failure(summary)
    assert_posts_executed_once(all_backends, run)
    # Out for its lb_drain only, once the health checks have seen the good release.
    wait_until(lambda: out_of_rotation(lb) == {first: ["drain"]}, 10, f"{first} to be out for lb_drain only")
    assert f"{first}: release {NEW_RELEASE}, healthy, " in fixed.stdout
    assert health(backends[first], first, backend_urls)["version"] == NEW_RELEASE


# --- scaling -----------------------------------------------------------------------------


def test_adding_a_backend_brings_it_into_rotation_without_a_failed_request(
    load, lb, lb_url, lb_name, role_var, inventory, spare, all_backends
):
    spare_host = testinfra.get_host(f"ansible://{spare}", ansible_inventory=inventory)
    with load(f"scale out: {spare} added to the backends, site.yml") as run:
        result = playbook(
            inventory,
            "site.yml",
            {"backend_release": NEW_RELEASE},
            extra_inventory={"backends": {"hosts": {spare: {}}}},
        )
        summary = run.stop(settle=4)
    assert result.returncode == 0, result.stdout[-4000:]
    assert_no_failure(summary)
    assert_posts_executed_once(all_backends, run)
    assert spare in servers(lb)
    # site.yml renders the inventory again: the drained backend of the last test is back too.
    assert out_of_rotation(lb) == {}
    assert hsts_max_age(lb, lb_url) == int(role_var(lb_name, "lb_hsts_max_age"))
    assert served_at_end(summary, spare_host.check_output("hostname")), f"{spare} is not in rotation"


def test_removing_a_backend_takes_it_out_without_a_failed_request(load, lb, inventory, spare, all_backends):
    spare_host = testinfra.get_host(f"ansible://{spare}", ansible_inventory=inventory)
    hostname = spare_host.check_output("hostname")
    with load(f"scale in: {spare} removed from the backends, site.yml --limit {LB_GROUP}, then stopped") as run:
        # Only the load balancers change (the documented short form; plain site.yml does the same).
        result = playbook(inventory, "site.yml", {"backend_release": NEW_RELEASE}, args=("--limit", LB_GROUP))
        # The load balancers no longer send it anything: stopping it now is invisible.
        spare_host.run_expect([0], "systemctl stop lbapp.service")
        summary = run.stop(settle=5)
    assert result.returncode == 0, result.stdout[-4000:]
    assert_no_failure(summary)
    assert_posts_executed_once(all_backends, run)
    assert spare not in servers(lb)
    assert not any(seconds_served(summary, hostname)[-3:]), f"{spare} still gets requests"
