"""Backend faults under continuous load: killed, stopped, gone, hung, slow, flapping, drained.

Run by the Molecule scenario ``zero-downtime`` (molecule/zero-downtime/molecule.yml), or by
hand against an inventory shaped like it (3+ backends, a load balancer, optionally a load
client in ``loadclients``, a backend with gthread workers for the gthread cases):

    pytest -rA tests/zero_downtime/ --ansible-inventory=<inventory>

These tests stop and freeze hosts; each leaves the tier serving.
Every step runs every kind of client (see support.py) and checks that no idempotent request
failed and that no POST was executed twice. The hard faults also check the active health
checker's timing: out of rotation within 3 s, back within 5 s, no stall after it left.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from helpers import wait_until
from zero_downtime.support import (
    assert_no_failure,
    assert_posts_executed_once,
    checker_status,
    container_name,
    longest_absence,
    out_of_rotation,
    requests_after,
    rotation_changed,
    served_at_end,
    slowed,
)

# Seconds a server stays out after a failed attempt (lb_default_fail_timeout) plus margin:
# after this long with the backend back, NGINX has tried it again.
REJOIN_SECONDS = 7
HANG_SECONDS = 30
LEAVE_WITHIN = 3.0
RETURN_WITHIN = 5.0
# After the checker took a backend out: no request slower than this (stalls stay in the
# detection window). The checker notes the change when the reload signal is sent; NGINX's
# new workers take over, and the old ones let go of kept-alive connections, a moment later
# (up to about 1 s seen on the 2-core CI machine under the suite's load).
AFTER_LEAVING_SLOWEST = 0.1
RELOAD_MARGIN = 1.5
ALL_KINDS = ("close", "keepalive", "h2", "post")
FLAPS = 3


@pytest.fixture(scope="module")
def read_timeout(role_var, lb_name) -> float:
    return float(role_var(lb_name, "lb_proxy_read_timeout"))


def victim(workers: dict, kind: str) -> str:
    if kind not in workers:
        pytest.skip(f"no backend with {kind} workers in this inventory")
    return workers[kind]


def back_in_rotation(lb, name: str, after: float, within: float = 30) -> float:
    return wait_until(lambda: rotation_changed(lb, name, True, after), within, f"{name} to return to rotation")


def out_and_back(lb, host, name: str, fault: str, undo: str, hold: float) -> dict:
    """Run `fault` on the backend, wait until the health checker has it out, end the fault
    `hold` seconds after it began, wait until it is back. Returns the times and, as seen
    while it was out, why it was out and what its last check said."""
    seen = {"fault": time.time()}
    host.run_expect([0], fault)
    try:
        seen["left"] = wait_until(lambda: rotation_changed(lb, name, False, seen["fault"]), 15, f"{name} to leave")
        seen["reasons"] = out_of_rotation(lb).get(name)
        seen["last_check"] = checker_status(lb)["servers"][name]["last"]
        time.sleep(max(0.0, seen["fault"] + hold - time.time()))
    finally:
        seen["undo"] = time.time()
        host.run_expect([0], undo)
    seen["back"] = back_in_rotation(lb, name, seen["undo"])
    return seen


# --- a backend that dies or goes away ----------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_kill_9_of_a_backend_costs_no_request(load, backends, names, workers, all_backends, kind):
    name = victim(workers, kind)
    host = backends[name]
    restarts = int(host.check_output("systemctl show -p NRestarts --value lbapp.service"))
    with load(f"kill -9 of every gunicorn process of {name} ({kind})") as run:
        time.sleep(2)
        host.run_expect([0], "systemctl kill --signal=SIGKILL lbapp.service")
        # systemd starts it again (Restart=on-failure); NGINX tries it again after fail_timeout.
        wait_until(lambda: host.run("systemctl is-active lbapp.service").stdout.strip() == "active", 30, "the restart")
        time.sleep(REJOIN_SECONDS)
        result = run.stop()
    assert int(host.check_output("systemctl show -p NRestarts --value lbapp.service")) == restarts + 1
    assert_no_failure(result)
    assert_posts_executed_once(all_backends, run)
    assert served_at_end(result, names[name]), f"{name} did not rejoin the rotation"


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_systemctl_stop_of_a_backend_costs_no_request(load, backends, names, workers, all_backends, kind):
    name = victim(workers, kind)
    host = backends[name]
    with load(f"systemctl stop, then start, of {name} ({kind})") as run:
        time.sleep(2)
        host.run_expect([0], "systemctl stop lbapp.service")
        time.sleep(4)
        host.run_expect([0], "systemctl start lbapp.service")
        time.sleep(REJOIN_SECONDS)
        result = run.stop()
    assert_no_failure(result)
    assert_posts_executed_once(all_backends, run)
    assert longest_absence(result, names[name]) >= 3, "the backend kept serving while stopped?"
    assert served_at_end(result, names[name]), f"{name} did not rejoin the rotation"


def test_a_stopped_container_costs_no_request_and_comes_back_on_its_address(
    load, inventory, backends, names, backend_addresses, all_backends
):
    name, host = list(backends.items())[-1]
    container = container_name(inventory, name)
    if container is None:
        pytest.skip(f"{name} is not a Docker container")
    with load(f"docker stop of {name}'s container, then docker start") as run:
        time.sleep(2)
        subprocess.run(["docker", "stop", container], check=True, capture_output=True, timeout=60)
        # Its address no longer answers: NGINX's connect timeout (1 s) and retries cover it.
        time.sleep(6)
        subprocess.run(["docker", "start", container], check=True, capture_output=True, timeout=60)
        wait_until(lambda: host.run("systemctl is-active lbapp.service").stdout.strip() == "active", 60, "the boot")
        time.sleep(REJOIN_SECONDS)
        result = run.stop()
    assert_no_failure(result)
    assert_posts_executed_once(all_backends, run)
    assert longest_absence(result, names[name]) >= 5
    assert served_at_end(result, names[name]), f"{name} did not rejoin the rotation"
    facts = host.ansible("setup", "gather_subset=network", check=False)["ansible_facts"]
    assert facts["ansible_default_ipv4"]["address"] == backend_addresses[name], "the container came back elsewhere"


# --- a backend that stops answering --------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_a_hung_backend_costs_no_request_and_stalls_only_until_it_leaves(
    load, lb, backends, names, workers, all_backends, read_timeout, kind
):
    """SIGSTOP of the gunicorn master and workers: connections are accepted, never answered."""
    name = victim(workers, kind)
    host = backends[name]
    with load(f"{name} ({kind}) hung for {HANG_SECONDS} s (SIGSTOP), then SIGCONT") as run:
        time.sleep(2)
        seen = out_and_back(
            lb,
            host,
            name,
            "systemctl kill --signal=SIGSTOP lbapp.service",
            "systemctl kill --signal=SIGCONT lbapp.service",
            HANG_SECONDS,
        )
        result = run.stop(settle=3)
    stopped_at, left_at, resumed_at, returned_at = seen["fault"], seen["left"], seen["undo"], seen["back"]
    # While it is out and still hung (the bound is about stalls repeated every fail_timeout); the
    # moment it resumes and rejoins is a burst of its backlog and two LBs' reloads, not a stall.
    resumed = resumed_at - result["started_at_epoch"]
    late = [
        r for r in requests_after(result, left_at + RELOAD_MARGIN) if r[1] > AFTER_LEAVING_SLOWEST and r[0] < resumed
    ]
    print(
        f"  {name} left rotation {left_at - stopped_at:.2f} s after it hung, came back "
        f"{returned_at - resumed_at:.2f} s after SIGCONT; {slowed(result)} requests slower than "
        f"{AFTER_LEAVING_SLOWEST} s, {len(late)} of them after it left and before SIGCONT; "
        f"last check: {seen['last_check']}"
    )
    assert_no_failure(result, slowest_allowed=read_timeout + 0.5)
    assert_posts_executed_once(all_backends, run)
    assert seen["reasons"] == ["health"] and "timed out" in seen["last_check"]
    assert left_at - stopped_at <= LEAVE_WITHIN
    assert returned_at - resumed_at <= RETURN_WITHIN
    assert late == [], late[:10]


SLOW_SERVER = """
import http.server, socketserver, sys, time
delay = float(sys.argv[3])
class Slow(http.server.BaseHTTPRequestHandler):
    def answer(self):
        time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Slow).serve_forever()
"""


def test_a_slow_backend_costs_no_request(
    load, lb, backends, names, backend_addresses, backend_ports, all_backends, read_timeout
):
    """Every answer comes later than the read timeout: a process that accepts and reads, then dawdles."""
    name = list(backends)[1]
    host = backends[name]
    host.run_expect([0], f"cat > /tmp/lbi-slow.py <<'EOF'\n{SLOW_SERVER}\nEOF")
    with load(f"{name} slower than the read timeout ({read_timeout:g} s) on every answer") as run:
        time.sleep(2)
        # The slow process takes over the port at once: no refused connections in between.
        host.run_expect(
            [0],
            "systemctl kill --signal=SIGKILL lbapp.service && systemctl stop lbapp.service && "
            f"(nohup setsid python3 /tmp/lbi-slow.py {backend_addresses[name]} {backend_ports[name]} "
            f"{read_timeout + 1} >/dev/null 2>&1 </dev/null &)",
        )
        slow_at = time.time()
        try:
            left_at = wait_until(lambda: rotation_changed(lb, name, False, slow_at - 1), 15, f"{name} to leave")
            time.sleep(8)
            status = checker_status(lb)["servers"][name]
        finally:
            host.run("pkill -f '[l]bi-slow.py'")
            host.run_expect([0], "systemctl start lbapp.service")
        returned_at = back_in_rotation(lb, name, slow_at)
        result = run.stop(settle=3)
    print(
        f"  {name} left rotation {left_at - slow_at:.2f} s after it turned slow (last check: {status['last']}), "
        f"back {returned_at - slow_at:.1f} s after; {slowed(result)} requests slower than {AFTER_LEAVING_SLOWEST} s"
    )
    assert "timed out" in status["last"]
    assert_no_failure(result, slowest_allowed=read_timeout + 0.5)
    assert_posts_executed_once(all_backends, run)


def test_a_flapping_backend_costs_no_request_and_no_reload_storm(load, lb, backends, all_backends, read_timeout):
    """Hung for 4 s, fine for 4 s, three times: each phase is one verdict change, one reload at most."""
    name = list(backends)[1]
    host = backends[name]
    before = checker_status(lb)
    with load(f"{name} flapping: hung 4 s, answering 4 s, {FLAPS} times") as run:
        time.sleep(2)
        try:
            for _ in range(FLAPS):
                host.run_expect([0], "systemctl kill --signal=SIGSTOP lbapp.service")
                time.sleep(4)
                host.run_expect([0], "systemctl kill --signal=SIGCONT lbapp.service")
                time.sleep(4)
        finally:
            host.run("systemctl kill --signal=SIGCONT lbapp.service")
        wait_until(lambda: checker_status(lb)["servers"][name]["in_rotation"], 15, f"{name} to return to rotation")
        result = run.stop(settle=3)
    after = checker_status(lb)
    reloads = after["reloads"] - before["reloads"]
    changes = after["servers"][name]["transitions"] - before["servers"][name]["transitions"]
    print(f"  {changes} verdict changes, {reloads} NGINX reloads by the health checker for {FLAPS} flaps")
    assert_no_failure(result, slowest_allowed=read_timeout + 0.5)
    assert_posts_executed_once(all_backends, run)
    assert reloads <= changes <= 2 * FLAPS, (reloads, changes)


def test_the_apps_drain_takes_a_backend_out_and_back(load, lb, backends, names, all_backends):
    """The app answers /health with 503 while its drain file exists; the checker acts on it."""
    name = next(iter(backends))
    host = backends[name]
    with load(f"{name} drained by its app (drain file), then undrained") as run:
        time.sleep(2)
        seen = out_and_back(lb, host, name, "touch /run/lbapp/drain", "rm -f /run/lbapp/drain", 7)
        result = run.stop(settle=3)
    drained_at, left_at, undrained_at, returned_at = seen["fault"], seen["left"], seen["undo"], seen["back"]
    start = result["started_at_epoch"]
    after_left = requests_after(result, left_at, ALL_KINDS)
    served = [r[0] for r in after_left if r[4] == names[name] and r[0] < undrained_at - start]
    print(
        f"  {name} left rotation {left_at - drained_at:.2f} s after its drain (last check: {seen['last_check']}), "
        f"served its last request {max(served, default=left_at - start) - (left_at - start):.2f} s after the "
        f"checker's reload, back {returned_at - undrained_at:.2f} s after the drain ended"
    )
    assert (seen["reasons"], seen["last_check"]) == (["health"], "HTTP 503 (draining)")
    assert_no_failure(result)
    assert_posts_executed_once(all_backends, run)
    assert left_at - drained_at <= LEAVE_WITHIN
    assert returned_at - undrained_at <= RETURN_WITHIN
    out = [r for r in requests_after(result, left_at + RELOAD_MARGIN, ALL_KINDS) if r[0] < undrained_at - start]
    assert out and [r for r in out if r[4] == names[name]] == [], "served while out of rotation"
