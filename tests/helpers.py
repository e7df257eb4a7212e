"""Helpers shared by both scenarios' suites (tests/default, tests/zero_downtime).

Test modules import them as ``helpers`` (tests/pytest.ini puts tests/ on sys.path); the
fixtures built on them are in tests/conftest.py. Hosts are picked by inventory group, so
the same tests fit 3 backends or 30.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import testinfra
import yaml
from testinfra.utils.ansible_runner import AnsibleRunner

PROJECT_DIR = Path(__file__).resolve().parent.parent
BACKEND_GROUP = os.environ.get("LBI_BACKEND_GROUP", "backends")
LB_GROUP = os.environ.get("LBI_LB_GROUP", "loadbalancers")
MONITORING_GROUP = os.environ.get("LBI_MONITORING_GROUP", "monitoring")
SERVERS_JSON = "/etc/nginx/lbi/servers.json"
# Every role's defaults: variable names carry their role's prefix, so one mapping holds them all.
ROLE_DEFAULTS = {
    name: value
    for path in sorted((PROJECT_DIR / "roles").glob("*/defaults/main.yml"))
    for name, value in (yaml.safe_load(path.read_text()) or {}).items()
}

# Runs on a tier host with its own python3: sends requests over fresh connections and
# prints one JSON object per answer. Only ever aimed at the host's loopback or at
# tier hosts on the project's network.
CLIENT = textwrap.dedent(
    """
    import json, ssl, sys, time, urllib.error, urllib.request
    url, count, headers, method, body = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
    data = body.encode() if body else None

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None  # report 3xx answers as they are

    # The lab's certificate is self-signed: the TLS tests check it separately.
    unverified = urllib.request.HTTPSHandler(context=ssl._create_unverified_context())
    opener = urllib.request.build_opener(NoRedirect, unverified)
    out = []
    for _ in range(count):
        req = urllib.request.Request(url, headers=headers, method=method, data=data)
        start = time.monotonic()
        try:
            with opener.open(req, timeout=10) as resp:
                status, hdrs, text = resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            status, hdrs, text = err.code, dict(err.headers), err.read().decode("utf-8", "replace")
        except Exception as err:  # connection errors count as failures
            status, hdrs, text = 0, {}, repr(err)
        out.append({"status": status, "headers": {k.lower(): v for k, v in hdrs.items()},
                    "body": text[:2000], "seconds": round(time.monotonic() - start, 4)})
    print(json.dumps(out))
    """
)


def setting(inventory: str, host: str, name: str):
    """A role variable as `host` gets it: the inventory's value, else the role's default."""
    value = AnsibleRunner.get_runner(inventory).get_variables(host).get(name, ROLE_DEFAULTS[name])
    if isinstance(value, str) and "{{" in value:
        raise ValueError(f"{name} of {host} is a template ({value}): the tests need it set in the inventory")
    return value


def group_hosts(inventory: str, group: str) -> dict[str, testinfra.host.Host]:
    names = AnsibleRunner(inventory).get_hosts(group)
    return {name: testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory) for name in names}


def primary_address(host) -> str:
    """The host's primary IPv4 address, as Ansible's facts see it."""
    facts = host.ansible("setup", "gather_subset=network", check=False)["ansible_facts"]
    return facts["ansible_default_ipv4"]["address"]


def python(host, script: str, *args) -> str:
    """Run a Python script with the host's own python3; returns its standard output."""
    return host.check_output(" ".join(shlex.quote(str(a)) for a in ("python3", "-c", script, *args)))


def http(host, url: str, count: int = 1, headers: dict | None = None, method: str = "GET", body: str = ""):
    """Send `count` requests from `host` to `url`; return the decoded answers. The headers of
    an answer are a dict: a repeated header shows once (see test_edge for the raw lines)."""
    return json.loads(python(host, CLIENT, url, count, json.dumps(headers or {}), method, body))


def servers(lb) -> dict[str, dict]:
    """Inventory name -> its entry in the load balancer's upstream state (lbi/servers.json)."""
    state = json.loads(lb.file(SERVERS_JSON).content_string)
    return {server["name"]: server for server in state["servers"]}


RECAP_LINE = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def recap(output: str) -> dict[str, dict[str, int]]:
    """Host -> its PLAY RECAP counters (ok, changed, unreachable, failed) in a playbook's output."""
    keys = ("ok", "changed", "unreachable", "failed")
    return {host: dict(zip(keys, map(int, counts))) for host, *counts in RECAP_LINE.findall(output)}


def hosts_not_clean(output: str) -> list[str]:
    """The hosts of the recap with a change or a failure; [] for a clean run (the recap must be there)."""
    counters = recap(output)
    assert counters, f"no PLAY RECAP in the output: {output[-3000:]}"
    return sorted(host for host, c in counters.items() if c["changed"] or c["failed"] or c["unreachable"])


def ansible_env(**extra: str) -> dict:
    """This process's environment for an Ansible command whose output a test reads: plain text,
    even where the caller forces colour (Molecule does when its own output is coloured)."""
    return {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", **extra}


def run_playbook(
    inventory: str,
    name: str,
    extra_vars: dict,
    args: tuple = (),
    extra_inventory: dict | None = None,
    timeout: int = 600,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run playbooks/<name> like a user would: extra vars, more args, and optionally a
    second inventory source that adds groups and host vars (`extra_inventory`, the
    children of "all")."""
    environment = ansible_env(
        ANSIBLE_ROLES_PATH=str(PROJECT_DIR / "roles"),
        ANSIBLE_COLLECTIONS_PATH=str(PROJECT_DIR / "collections"),
        **(env or {}),
    )
    with tempfile.TemporaryDirectory() as tmp:
        sources = ["-i", inventory]
        if extra_inventory:
            extra = Path(tmp) / "extra.json"
            extra.write_text(json.dumps({"all": {"children": extra_inventory}}))
            sources += ["-i", str(extra)]
        return subprocess.run(
            ["ansible-playbook", *sources, str(PROJECT_DIR / "playbooks" / name), "-e", json.dumps(extra_vars), *args],
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
            check=False,
        )


def run_site(inventory: str, extra_vars: dict, limit: str, host_vars: dict | None = None, tags: str | None = None):
    """site.yml limited to `limit` (and to `tags`), with extra vars and optional per-host vars;
    JSON task results."""
    return run_playbook(
        inventory,
        "site.yml",
        extra_vars,
        ("--limit", limit, *(("--tags", tags) if tags else ())),
        host_vars,
        env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
    )


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    """Call `predicate` until it returns something true, and return that; fail the test
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def holders(hosts: dict, address: str) -> list[str]:
    """Names of the hosts that hold `address` now (a stopped container holds nothing)."""
    held = []
    for name, host in hosts.items():
        out = host.run("hostname -I")
        if out.rc == 0 and address in out.stdout.split():
            held.append(name)
    return held


def hostname_map(hosts: dict) -> dict[str, str]:
    """Inventory name -> the host name a backend reports in X-Backend."""
    return {name: host.check_output("hostname") for name, host in hosts.items()}
