"""What the zero-downtime suites share: the load run, its report, and the checks on it.

Imported as ``zero_downtime.support``; the fixtures that use it are in conftest.py beside it.

A step starts tests/zero_downtime/loaddriver.py on the load client (group ``loadclients``;
without one, on the load balancer against its loopback), with every kind of client at once:
new connection per request, keep-alive, HTTP/2 and POSTs. It does the disruptive thing, keeps
the load on a little, then prints per kind total, failed, slowest and p99, and the checks
assert: no failed idempotent request, none slower than the step's bound, and every POST
executed at most once (each answered 2xx exactly once), its failures printed as they are.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import http, run_playbook, servers, wait_until

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "loaddriver.py"
DRIVER_ON_HOST = "/tmp/lbi-loaddriver.py"
# Paced, so that Ansible still has CPU to run the operation.
LOAD_MIX = os.environ.get("LBI_LOAD_MIX", "close=2,keepalive=1,h2=1,post=1")
LOAD_RATE = float(os.environ.get("LBI_LOAD_RATE", "100"))
SLOWEST_ALLOWED = 2.0
STATUS_FILE = "/run/lbi-healthcheck/status.json"


class Load:
    """The load driver running in the background on the load client."""

    def __init__(self, host, url: str, step: str, max_seconds: int, retry_once_after: float | None = None) -> None:
        self.host = host
        self.retry = "" if retry_once_after is None else f" --retry-once-after {retry_once_after}"
        self.url = url
        self.step = step
        self.max_seconds = max_seconds
        self.base = f"/tmp/lbi-load-{uuid.uuid4().hex[:8]}"
        self.post_prefix = f"lbi-post-{uuid.uuid4().hex[:8]}"
        self.result: dict = {}

    def __enter__(self) -> Load:
        payload = base64.b64encode(DRIVER.read_bytes()).decode()
        self.host.run_expect([0], f"echo {payload} | base64 -d > {DRIVER_ON_HOST}")
        self.host.run_expect(
            [0],
            f"nohup setsid python3 {DRIVER_ON_HOST} --url {self.url} --mix {LOAD_MIX} --rate {LOAD_RATE} "
            f"--post-id-prefix {self.post_prefix} --max-seconds {self.max_seconds} --stop-file {self.base}.stop "
            f"--out {self.base}.json{self.retry} >{self.base}.log 2>&1 </dev/null &",
        )
        wait_until(self.ready, 30, "every kind of client to get its first 2xx")
        return self

    def ready(self) -> bool:
        if self.host.file(f"{self.base}.json").exists:  # ended before it was ready: say why
            pytest.fail(f"the load driver stopped at once: {self.host.file(f'{self.base}.log').content_string}")
        return self.host.file(f"{self.base}.json.ready").exists

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
        assert not self.result.get("fatal"), self.result["fatal"]
        report(self.step, self.result)
        return self.result


def report(step: str, result: dict) -> None:
    print(f"\n[{step}] {result['duration_s']:.1f} s, per backend {dict(sorted(result['backends'].items()))}")
    for kind, stats in result["by_kind"].items():
        failures = "; ".join(f"{f['at_s']}s {f['status']} {f['error']}" for f in stats["failures"][:3])
        print(
            f"  {kind:9} {stats['requests']:5} requests, {stats['failed']} failed, slowest {stats['slowest_s']:.3f} s, "
            f"p99 {stats['p99_s']:.3f} s" + (f"; failures: {failures}" if failures else "")
        )


def assert_no_failure(result: dict, slowest_allowed: float = SLOWEST_ALLOWED) -> None:
    """No failed idempotent request (every GET kind), none slower than the bound."""
    assert result["requests"] > 0
    assert all(stats["requests"] > 0 for kind, stats in result["by_kind"].items() if kind != "post"), result["by_kind"]
    assert result["failed"] == 0, result["failures"]
    slowest = (result["slowest_s"], result["slowest_at_s"], result["slowest_backend"])
    assert result["slowest_s"] <= slowest_allowed, slowest


def post_executions(hosts: dict, result: dict, prefix: str) -> collections.Counter:
    """POST ID -> how many backends executed it, from the app's "post_received" journal records."""
    since = int(result["started_at_epoch"]) - 1
    executed: collections.Counter = collections.Counter()
    for host in hosts.values():
        out = host.run(f"journalctl -u lbapp.service --since @{since} --no-pager -o cat | grep -F {prefix}").stdout
        for line in out.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == "post_received" and record.get("request_id", "").startswith(prefix):
                executed[record["request_id"]] += 1
    return executed


def assert_posts_executed_once(hosts: dict, run: Load) -> None:
    """Never executed twice; each 2xx executed exactly once; failures printed, not hidden."""
    result = run.result
    if "post" not in result["by_kind"]:
        return
    answered = result["posts"]["answered_2xx"]
    # The journal may lag the answer by a moment.
    deadline = time.monotonic() + 20
    executed = post_executions(hosts, result, run.post_prefix)
    while not all(executed[i] for i in answered) and time.monotonic() < deadline:
        time.sleep(1)
        executed = post_executions(hosts, result, run.post_prefix)
    twice = sorted(i for i, count in executed.items() if count > 1)
    failed = result["posts"]["failed"]
    executed_failed = [f["id"] for f in failed if executed[f["id"]]]
    print(
        f"  POSTs: {len(answered)} answered 2xx, {len(failed)} failed"
        + (f" ({len(executed_failed)} of them executed by a backend all the same)" if failed else "")
        + (f", executed twice: {twice}" if twice else ", none executed twice")
    )
    assert not twice, twice
    assert [i for i in answered if executed[i] != 1] == []
    assert sum(executed.values()) == len(answered) + len(executed_failed)


def requests_after(result: dict, since_epoch: float, kinds=("close", "keepalive", "h2")) -> list:
    """[offset, seconds, kind, status, backend] of the given kinds' requests started after since_epoch."""
    start = since_epoch - result["started_at_epoch"]
    wanted = {result["kinds"].index(kind) for kind in kinds if kind in result["kinds"]}
    return [r for r in result["records"] if r[0] >= start and r[2] in wanted]


def slowed(result: dict, threshold: float = 0.1) -> int:
    get = {result["kinds"].index(k) for k in result["kinds"] if k != "post"}
    return sum(1 for r in result["records"] if r[2] in get and r[1] > threshold)


def seconds_served(result: dict, hostname: str) -> list[bool]:
    """Per whole second of the run: did `hostname` answer any GET? (last, partial second dropped)"""
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
    result = run_playbook(inventory, name, extra_vars, args, extra_inventory, timeout=900)
    recap = result.stdout[result.stdout.rfind("PLAY RECAP") :]
    print(
        f"\n$ ansible-playbook {name} {json.dumps(extra_vars)} {' '.join(args)}: rc={result.returncode}, "
        f"{time.monotonic() - started:.0f} s\n{recap.strip()}"
    )
    return result


def out_of_rotation(lb) -> dict[str, list]:
    """Inventory name -> why it is out of rotation, for the backends that are."""
    return {name: server["down"] for name, server in servers(lb).items() if server["down"]}


def checker_status(lb) -> dict:
    return json.loads(lb.file(STATUS_FILE).content_string)


def rotation_changed(lb, name: str, in_rotation: bool, after: float) -> float | None:
    """When the health checker saw `name` enter (True) or leave (False) rotation after `after`."""
    backend = checker_status(lb)["servers"].get(name, {})
    at = backend.get("rotation_changed_at")
    return at if backend.get("in_rotation") == in_rotation and at and at > after else None


def health(host, name: str, urls: dict[str, str]) -> dict:
    (answer,) = http(host, f"{urls[name]}/health")
    return {**(json.loads(answer["body"]) if answer["status"] in (200, 503) else {}), "http": answer["status"]}


def container_name(inventory: str, name: str) -> str | None:
    """The Docker container behind an inventory host, or None when it is not a container."""
    hostvars = AnsibleRunner(inventory).get_variables(name)
    if hostvars.get("ansible_connection") not in ("community.docker.docker", "docker"):
        return None
    return hostvars.get("ansible_host", name)
