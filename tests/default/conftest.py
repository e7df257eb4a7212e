"""Fixtures of the default scenario's suites, on top of tests/conftest.py: the monitoring host
and its Prometheus API, for test_monitoring.py and test_ha.py."""

from __future__ import annotations

import json
import shlex
import urllib.parse

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import MONITORING_GROUP, primary_address


@pytest.fixture(scope="session")
def mon_name(inventory) -> str:
    names = AnsibleRunner(inventory).get_hosts(MONITORING_GROUP)
    if not names:
        pytest.skip(f"no host in group {MONITORING_GROUP}")
    return names[0]


@pytest.fixture(scope="session")
def mon(inventory, mon_name):
    return testinfra.get_host(f"ansible://{mon_name}", ansible_inventory=inventory)


# Fetches a URL on the host itself and prints the whole body (API answers can be long).
FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"


@pytest.fixture(scope="session")
def prom(mon, mon_name, role_var):
    """GET a Prometheus API path on the monitoring host; returns the decoded "data"."""
    base = f"http://{primary_address(mon)}:{role_var(mon_name, 'monitoring_port')}"

    def get(path: str, **params):
        url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        body = json.loads(mon.check_output(f"python3 -c {shlex.quote(FETCH)} {shlex.quote(url)}"))
        assert body["status"] == "success", body
        return body["data"]

    return get
