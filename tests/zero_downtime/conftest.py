"""Fixtures of the zero-downtime suites, on top of tests/conftest.py."""

from __future__ import annotations

import os

import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import group_hosts, primary_address
from zero_downtime.support import Load

CLIENT_GROUP = os.environ.get("LBI_CLIENT_GROUP", "loadclients")
SPARE_GROUP = os.environ.get("LBI_SPARE_GROUP", "spare_backends")


@pytest.fixture(scope="module")
def load_client(inventory, lb, lb_name, role_var, vip):
    """Where the load comes from and goes to: the floating address, else the first load balancer."""
    clients = group_hosts(inventory, CLIENT_GROUP)
    port = role_var(lb_name, "lb_tls_port")
    if not clients:
        return lb, f"https://127.0.0.1:{port}/"
    return next(iter(clients.values())), f"https://{vip or primary_address(lb)}:{port}/"


@pytest.fixture(scope="module")
def load(load_client):
    host, url = load_client

    def start(step: str, max_seconds: int = 300, retry_once_after: float | None = None) -> Load:
        return Load(host, url, step, max_seconds, retry_once_after)

    return start


@pytest.fixture(scope="module")
def all_backends(inventory, backends) -> dict:
    """The backends and the spare ones: where a POST may have been executed."""
    return {**backends, **group_hosts(inventory, SPARE_GROUP)}


@pytest.fixture(scope="module")
def spare(inventory) -> str:
    hosts = AnsibleRunner(inventory).get_hosts(SPARE_GROUP)
    if not hosts:
        pytest.skip(f"no host in group {SPARE_GROUP} to scale out with")
    return hosts[0]


@pytest.fixture(scope="module")
def workers(inventory, backends) -> dict[str, str]:
    """Worker class -> the first backend that runs it."""
    runner = AnsibleRunner(inventory)
    found: dict[str, str] = {}
    for name in backends:
        found.setdefault(runner.get_variables(name).get("backend_worker_class", "sync"), name)
    return found
