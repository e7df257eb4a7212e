"""Zero-downtime operations, each under continuous load through the load balancer.

Run by the Molecule scenario ``zero-downtime`` (see molecule/zero-downtime/molecule.yml),
or by hand against an inventory shaped like it (3+ backends, a load balancer, and a
spare host in the group ``spare_backends`` for the scaling tests):

    pytest -rA tests/zero_downtime/ops_under_load.py --rootdir tests --ansible-inventory=<inventory>

The file is deliberately not named test_*.py: the default scenario collects every
tests/**/test_*.py, and these tests kill processes, stop containers and roll releases.
They run in file order and each leaves the tier serving for the next one.

Every step runs tests/zero_downtime/loaddriver.py on the load balancer (requests to its
own loopback, a new connection each), does the disruptive thing, keeps the load on for
a few seconds, then prints total, failed and slowest requests and asserts: no failed
request, none slower than SLOWEST_ALLOWED seconds.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

from conftest import LB_GROUP, PROJECT_DIR, hostname_map, http, run_playbook, wait_until

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "loaddriver.py"
DRIVER_ON_HOST = "/tmp/lbi-loaddriver.py"
SPARE_GROUP = os.environ.get("LBI_SPARE_GROUP", "spare_backends")
# Load: a few threads, paced, so that Ansible still has CPU to run the operation.
LOAD_THREADS = 4
LOAD_RATE = float(os.environ.get("LBI_LOAD_RATE", "100"))
SLOWEST_ALLOWED = 2.0
NEW_RELEASE = "2.0.0"
# Seconds a server stays out after a failed attempt (lb_default_fail_timeout) plus margin:
# after this long with the backend back, NGINX has tried it again.
REJOIN_SECONDS = 7


# --- helpers -----------------------------------------------------------------------------


class Load:
    """The load driver running in the background on a load balancer."""

    def __init__(self, host, url: str, step: str, max_seconds: int) -> None:
        self.host = host
        self.url = url
        self.step = step
        self.max_seconds = max_seconds
        self.base = f"/tmp/lbi-load-{uuid.uuid4().hex[:8]}"
        self.result: dict = {}

    def __enter__(self) -> Load:
        payload = base64.b64encode(DRIVER.read_bytes()).decode()
        self.host.run_expect([0], f"echo {payload} | base64 -d > {DRIVER_ON_HOST}")
        self.host.run_expect(
            [0],
            f"nohup setsid python3 {DRIVER_ON_HOST} --url {self.url} --threads {LOAD_THREADS} --rate {LOAD_RATE} "
            f"--max-seconds {self.max_seconds} --stop-file {self.base}.stop --out {self.base}.json "
            f">{self.base}.log 2>&1 </dev/null &",
        )
        wait_until(lambda: self.host.file(f"{self.base}.json.ready").exists, 20, "the load driver to get its first 200")
        return self

    def __exit__(self, *exc) -> None:
        if not self.result:  # the step failed before stop(): end the run now, keep nothing
            self.host.run(f"touch {self.base}.stop")

    def stop(self, settle: float = 2.0) -> dict:
        """Keep the load on for `settle` seconds more, then stop it and return the summary."""
        time.sleep(settle)
        self.host.run_expect([0], f"touch {self.base}.stop")
        wait_until(lambda: self.host.file(f"{self.base}.json").exists, 30, "the load driver's summary")
        self.result = json.loads(self.host.file(f"{self.base}.json").content_string)
        self.host.run(f"rm -f {self.base}.json {self.base}.json.ready {self.base}.stop {self.base}.log")
        report(self.step, self.result)
        return self.result


def report(step: str, result: dict) -> None:
    failures = "; ".join(f"{f['at_s']}s {f['status']} {f['error']}" for f in result["failures"][:5])
    print(
        f"\n[{step}] {result['requests']} requests in {result['duration_s']:.1f} s, "
        f"{result['failed']} failed, slowest {result['slowest_s']:.3f} s "
        f"(at {result['slowest_at_s']:.1f} s, {result['slowest_backend'] or '-'}), p99 {result['p99_s']:.3f} s; "
        f"per backend {dict(sorted(result['backends'].items()))}" + (f"; failures: {failures}" if failures else "")
    )


def assert_no_failure(result: dict) -> None:
    assert result["requests"] > 0
    assert result["failed"] == 0, result["failures"]
    slowest = (result["slowest_s"], result["slowest_at_s"], result["slowest_backend"])
    assert result["slowest_s"] < SLOWEST_ALLOWED, slowest


def seconds_served(result: dict, hostname: str) -> list[bool]:
    """Per whole second of the run: did `hostname` answer any request? (last, partial second dropped)"""
    return [hostname in second["backends"] for second in result["per_second"][:-1]]


def served_at_end(result: dict, hostname: str, seconds: int = 2) -> bool:
    return all(seconds_served(result, hostname)[-seconds:])


def longest_absence(result: dict, hostname: str) -> int:
    longest = current = 0
    for served in seconds_served(result, hostname):
        current = 0 if served else current + 1
        longest = max(longest, current)
    return longest


def playbook(inventory: str, name: str, extra_vars: dict, args: tuple = (), extra_inventory: dict | None = None):
    """Run playbooks/<name> as an operator would; returns the CompletedProcess (output printed)."""
    started = time.monotonic()
    result = run_playbook(
        inventory, name, extra_vars, args, extra_inventory, timeout=900, env={"ANSIBLE_FORCE_COLOR": "0"}
    )
    recap = result.stdout[result.stdout.rfind("PLAY RECAP") :]
    print(
        f"\n$ ansible-playbook {name} {json.dumps(extra_vars)} {' '.join(args)}: rc={result.returncode}, "
        f"{time.monotonic() - started:.0f} s\n{recap.strip()}"
    )
    return result


def upstream_lines(lb) -> dict[str, str]:
    """Inventory name -> its server line in the load balancer's upstream file."""
    conf = lb.file("/etc/nginx/conf.d/lbi-upstreams.conf").content_string
    return {m.group(2): m.group(1) for m in re.finditer(r"^\s*(server\s[^\n]*);\s+# (\S+)$", conf, re.M)}


def health(host, name: str, addresses: dict[str, str]) -> dict:
    (answer,) = http(host, f"http://{addresses[name]}:8000/health")
    return {**(json.loads(answer["body"]) if answer["status"] in (200, 503) else {}), "http": answer["status"]}


def container_name(inventory: str, name: str) -> str | None:
    """The Docker container behind an inventory host, or None when it is not a container."""
    hostvars = AnsibleRunner(inventory).get_variables(name)
    if hostvars.get("ansible_connection") not in ("community.docker.docker", "docker"):
        return None
    return hostvars.get("ansible_host", name)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def names(backends) -> dict[str, str]:
    """Inventory name -> host name (what X-Backend says), for the backends."""
    return hostname_map(backends)


@pytest.fixture(scope="module")
def load(lb, lb_url):
    def start(step: str, max_seconds: int = 300) -> Load:
        return Load(lb, lb_url + "/", step, max_seconds)

    return start


@pytest.fixture(scope="module")
def spare(inventory) -> str:
    hosts = AnsibleRunner(inventory).get_hosts(SPARE_GROUP)
    if not hosts:
        pytest.skip(f"no host in group {SPARE_GROUP} to scale out with")
    return hosts[0]


# --- failover ----------------------------------------------------------------------------


def test_kill_9_of_a_backend_costs_no_request(load, backends, names):
    name, host = next(iter(backends.items()))
    restarts = int(host.check_output("systemctl show -p NRestarts --value lbapp.service"))
    with load("kill -9 of every gunicorn process") as run:
        time.sleep(2)
        host.run_expect([0], "systemctl kill --signal=SIGKILL lbapp.service")
        # systemd starts it again (Restart=on-failure); NGINX tries it again after fail_timeout.
        wait_until(lambda: host.run("systemctl is-active lbapp.service").stdout.strip() == "active", 30, "the restart")
        time.sleep(REJOIN_SECONDS)
        result = run.stop()
    assert int(host.check_output("systemctl show -p NRestarts --value lbapp.service")) == restarts + 1
    assert_no_failure(result)
    assert served_at_end(result, names[name]), f"{name} did not rejoin the rotation"


def test_systemctl_stop_of_a_backend_costs_no_request(load, backends, names):
    name, host = list(backends.items())[1]
    with load("systemctl stop, then start") as run:
        time.sleep(2)
        host.run_expect([0], "systemctl stop lbapp.service")
        time.sleep(4)
        host.run_expect([0], "systemctl start lbapp.service")
        time.sleep(REJOIN_SECONDS)
        result = run.stop()
    assert_no_failure(result)
    assert longest_absence(result, names[name]) >= 3, "the backend kept serving while stopped?"
    assert served_at_end(result, names[name]), f"{name} did not rejoin the rotation"


def test_a_stopped_container_costs_no_request_and_comes_back_on_its_address(
    load, inventory, backends, names, backend_addresses
):
    name, host = list(backends.items())[2]
    container = container_name(inventory, name)
    if container is None:
        pytest.skip(f"{name} is not a Docker container")
    with load("docker stop of a backend container, then docker start") as run:
        time.sleep(2)
        subprocess.run(["docker", "stop", container], check=True, capture_output=True, timeout=60)
        # Its address no longer answers: NGINX's connect timeout (1 s) and retries cover it.
        time.sleep(6)
        subprocess.run(["docker", "start", container], check=True, capture_output=True, timeout=60)
        wait_until(lambda: host.run("systemctl is-active lbapp.service").stdout.strip() == "active", 60, "the boot")
        time.sleep(REJOIN_SECONDS)
        result = run.stop()
    assert_no_failure(result)
    assert longest_absence(result, names[name]) >= 5
    assert served_at_end(result, names[name]), f"{name} did not rejoin the rotation"
    facts = host.ansible("setup", "gather_subset=network", check=False)["ansible_facts"]
    assert facts["ansible_default_ipv4"]["address"] == backend_addresses[name], "the container came back elsewhere"


# --- rolling updates ---------------------------------------------------------------------


def test_rolling_update_to_a_new_release_costs_no_request(load, lb, inventory, backends, backend_addresses):
    with load(f"rolling update of every backend to {NEW_RELEASE}") as run:
        result = playbook(inventory, "rolling_update.yml", {"backend_release": NEW_RELEASE})
        summary = run.stop()
    assert result.returncode == 0, result.stdout[-4000:]
    assert_no_failure(summary)
    for name, host in backends.items():
        answer = health(host, name, backend_addresses)
        assert answer["http"] == 200 and answer["version"] == NEW_RELEASE, (name, answer)
        assert f"{name}: release {NEW_RELEASE}, healthy, " in result.stdout
    assert not [line for line in upstream_lines(lb).values() if line.endswith(" down")], upstream_lines(lb)


# --- load balancer reloads ---------------------------------------------------------------


def test_lb_reloads_cost_no_request_and_rollouts_leave_nothing_behind(load, lb, inventory):
    """A config change through site.yml, then bare reloads, all under load.

    The change is the only difference site.yml makes to the upstream file: the rollout
    before left nothing behind (no server marked down). The change stays until the next
    site.yml run (scaling out) renders the default again.
    """
    conf = "/etc/nginx/conf.d/lbi-upstreams.conf"
    before = lb.file(conf).content_string
    assert "keepalive_requests 1000;" in before
    with load("LB reloads: a config change through site.yml, then 5 bare reloads") as run:
        changed = playbook(inventory, "site.yml", {"lb_keepalive_requests": 999}, args=("--limit", LB_GROUP))
        for _ in range(5):
            lb.run_expect([0], "systemctl reload nginx.service")
            time.sleep(0.5)
        result = run.stop()
    assert changed.returncode == 0, changed.stdout[-3000:]
    assert_no_failure(result)
    assert lb.file(conf).content_string == before.replace("keepalive_requests 1000;", "keepalive_requests 999;")


# --- a rollout that fails --------------------------------------------------------------


def test_a_broken_release_stops_at_the_first_backend(load, lb, inventory, backends, backend_addresses, tmp_path):
    # A release whose code cannot start: importing the WSGI module raises.
    app = tmp_path / "app"
    subprocess.run(["cp", "-r", str(PROJECT_DIR / "app"), str(app)], check=True, capture_output=True, timeout=60)
    subprocess.run(["rm", "-rf", str(app / ".venv")], check=True)
    with (app / "src" / "lbapp" / "wsgi.py").open("a") as handle:
        handle.write('\nraise RuntimeError("this release is broken on purpose")\n')
    first, *others = list(backends)
    untouched = {name: health(backends[name], name, backend_addresses) for name in others}
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
    lines = upstream_lines(lb)
    assert lines[first].endswith(" down"), lines
    for name in others:
        assert not lines[name].endswith(" down"), lines
        now = health(backends[name], name, backend_addresses)
        # Never touched: same release, same process start.
        assert now["http"] == 200 and now["version"] == NEW_RELEASE, (name, now)
        assert now["uptime_seconds"] > untouched[name]["uptime_seconds"], (name, now, untouched[name])
    assert longest_absence(summary, hostname_map({first: backends[first]})[first]) >= 3

    # Recovery: roll the good release out to that backend again, keeping it out of rotation
    # for now (its own lb_drain: true is respected); site.yml puts it back (scale-out test).
    drained = {"backends": {"hosts": {first: {"lb_drain": True}}}}
    with load("recovery: the good release rolled out again to the failed backend, kept drained") as run:
        fixed = playbook(inventory, "rolling_update.yml", {"backend_release": NEW_RELEASE}, ("--limit", first), drained)
        summary = run.stop()
    assert fixed.returncode == 0, fixed.stdout[-4000:]
    assert_no_failure(summary)
    assert upstream_lines(lb)[first].endswith(" down"), "lb_drain: true was not respected"
    assert f"{first}: release {NEW_RELEASE}, healthy, " in fixed.stdout
    assert health(backends[first], first, backend_addresses)["version"] == NEW_RELEASE


# --- scaling -----------------------------------------------------------------------------


def test_adding_a_backend_brings_it_into_rotation_without_a_failed_request(load, lb, inventory, spare):
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
    lines = upstream_lines(lb)
    assert spare in lines
    # site.yml renders the inventory again: the drained backend of the last test is back too.
    assert not [line for line in lines.values() if line.endswith(" down")], lines
    assert "keepalive_requests 999;" not in lb.file("/etc/nginx/conf.d/lbi-upstreams.conf").content_string
    assert served_at_end(summary, spare_host.check_output("hostname")), f"{spare} is not in rotation"


def test_removing_a_backend_takes_it_out_without_a_failed_request(load, lb, inventory, spare):
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
    assert spare not in upstream_lines(lb)
    assert not any(seconds_served(summary, hostname)[-3:]), f"{spare} still gets requests"
