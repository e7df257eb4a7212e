"""A lost load balancer under continuous load sent to the floating address (keepalived).

Runs after test_operations.py, whose LB reloads and rolling updates already went through the
floating address while both load balancers served. Each step here takes the address holder
down in one way (its container stopped, its NGINX killed with SIGKILL, its NGINX stopped with
systemctl), then brings it back, and prints requests, failed, the longest gap without a
successful answer and the slowest request. The load driver gives each GET that got no answer
one second chance after RETRY_AFTER seconds, as a client that retries a failed connection once.
Bounds (issue 14): the address moves, the gap is at most GAP_ALLOWED seconds, no GET is lost
with that one retry, no POST runs twice; the old master's return moves nothing while
preemption is off, and moves the address back once, with a short gap, while it is on.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import LB_GROUP, holders, run_site, wait_until
from zero_downtime.support import assert_posts_executed_once, container_name

GAP_ALLOWED = 3.0
RETRY_AFTER = 0.5
# A returning host waits this long before it preempts, in the preemption step.
PREEMPT_DELAY = 2


@pytest.fixture(scope="module")
def pair(loadbalancers, vip) -> dict:
    if vip is None or len(loadbalancers) < 2:
        pytest.skip("no floating address (keepalived_vip_addresses) on two load balancers")
    return loadbalancers


def the_holder(pair: dict, vip: str) -> str:
    return wait_until(lambda: (lambda h: h[0] if len(h) == 1 else None)(holders(pair, vip)), 30, f"one holder of {vip}")


def check(step: str, run, summary: dict, pair: dict, all_backends: dict, moved: bool = True) -> None:
    gap, gap_at = summary["longest_gap_s"], summary["longest_gap_at_s"]
    second = {kind: stats["second_tries"] for kind, stats in summary["by_kind"].items() if kind != "post"}
    print(
        f"  [{step}] {summary['requests']} GETs, {summary['failed']} failed after one retry "
        f"(GETs retried: {second}), longest gap {gap:.3f} s at {gap_at:.1f} s, slowest {summary['slowest_s']:.3f} s"
    )
    assert summary["requests"] > 0 and summary["failed"] == 0, summary["failures"]
    assert gap <= GAP_ALLOWED, (gap, gap_at)
    if not moved:
        assert sum(second.values()) == 0, second
    assert_posts_executed_once(all_backends, run)


def fail_and_return(load, pair, vip, all_backends, step: str, fault, undo) -> tuple[str, str]:
    master = the_holder(pair, vip)
    with load(f"{step} on the holder {master}", 120, RETRY_AFTER) as run:
        fault(master)
        new = wait_until(lambda: [h for h in holders(pair, vip) if h != master], 20, f"{vip} to leave {master}")
        summary = run.stop(settle=3)
    check(step, run, summary, pair, all_backends)
    assert len(new) == 1, new
    with load(f"{master} back after {step}, preemption off", 180, RETRY_AFTER) as run:
        undo(master)
        changes = watch(pair, vip, new[0], 8)
        summary = run.stop(settle=1)
    check(f"{master} back", run, summary, pair, all_backends, moved=False)
    assert changes == [], f"the address moved when {master} came back: {changes}"
    return master, new[0]


def watch(pair: dict, vip: str, expected: str, seconds: float) -> list:
    """Holders seen other than [expected] while watching for `seconds`."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = holders(pair, vip)
        if now != [expected]:
            seen.append(now)
        time.sleep(0.5)
    return seen


def test_a_stopped_load_balancer_container_costs_no_request(load, pair, vip, inventory, all_backends):
    def stop(name):
        subprocess.run(["docker", "stop", "-t", "10", container_name(inventory, name)], check=True, capture_output=True)

    def start(name):
        subprocess.run(["docker", "start", container_name(inventory, name)], check=True, capture_output=True)
        wait_until(lambda: pair[name].run("systemctl is-active keepalived.service nginx.service").rc == 0, 90, name)
        # keepalived is up as backup; give it an advert interval or three to settle.
        time.sleep(4)

    if container_name(inventory, next(iter(pair))) is None:
        pytest.skip("the load balancers are not Docker containers")
    fail_and_return(load, pair, vip, all_backends, "container stopped", stop, start)


@pytest.mark.parametrize(
    ("step", "command"),
    [("NGINX killed (SIGKILL)", "pkill -KILL -x nginx"), ("NGINX stopped (systemctl)", "systemctl stop nginx.service")],
)
def test_a_lost_nginx_costs_no_request(load, pair, vip, all_backends, step, command):
    fail_and_return(
        load,
        pair,
        vip,
        all_backends,
        step,
        lambda name: pair[name].run_expect([0], command),
        lambda name: nginx_back(pair, name),
    )


def nginx_back(pair: dict, name: str) -> None:
    """Start NGINX on `name` again and wait until its keepalived is a backup once more."""
    pair[name].run_expect([0], "systemctl start nginx.service")
    wait_until(lambda: "BACKUP" in vrrp_state(pair[name]), 15, f"{name} to be backup")


def vrrp_state(host) -> str:
    """The state the notify hook last wrote for the instance (MASTER, BACKUP, FAULT, STOP)."""
    return host.run("grep -o 'state=\"[A-Z]*\"' /var/lib/prometheus/node-exporter/lbi_vrrp.prom").stdout


def test_with_preemption_the_first_host_takes_the_address_back_once(load, pair, vip, inventory, all_backends):
    first = AnsibleRunner(inventory).get_hosts(LB_GROUP)[0]
    if the_holder(pair, vip) == first:  # hand it to the other one first (not measured)
        pair[first].run_expect([0], "systemctl stop nginx.service")
        wait_until(lambda: first not in holders(pair, vip), 20, f"{vip} to leave {first}")
        nginx_back(pair, first)
    other = the_holder(pair, vip)
    try:
        with load(f"preemption turned on: {first} takes {vip} back from {other}", 240, RETRY_AFTER) as run:
            result = run_site(
                inventory,
                {"keepalived_preempt": True, "keepalived_preempt_delay": PREEMPT_DELAY},
                LB_GROUP,
                tags="keepalived",
            )
            assert result.returncode == 0, result.stdout[-3000:]
            wait_until(lambda: holders(pair, vip) == [first], 30, f"{first} to take {vip} back")
            changes = watch(pair, vip, first, 6)
            summary = run.stop(settle=1)
        check(f"{first} preempts", run, summary, pair, all_backends)
        assert changes == [], f"more than one move: {changes}"
    finally:
        restored = run_site(inventory, {}, LB_GROUP, tags="keepalived")
    assert restored.returncode == 0, restored.stdout[-3000:]
