"""Fixtures shared by both scenarios' suites (tests/default, tests/zero_downtime).

The suites run against any inventory: under Molecule (which passes --ansible-inventory)
or by hand, e.g.
    pytest tests/default --ansible-inventory=inventory/lab/hosts.yml
tests/pytest.ini makes tests/ the rootdir whichever directory pytest is given, so this
file is always loaded. Plain functions live in helpers.py: test modules import those,
never this file.
"""

from __future__ import annotations

import os

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import BACKEND_GROUP, LB_GROUP, group_hosts, hostname_map, primary_address


def pytest_addoption(parser):
    parser.addoption("--destructive", action="store_true", help="also run the tests marked destructive")


def pytest_collection_modifyitems(config, items):
    """Destructive tests run last, and outside Molecule only when asked for (--destructive)."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)
    if config.getoption("--destructive") or os.environ.get("MOLECULE_INVENTORY_FILE"):
        return
    skip = pytest.mark.skip(reason="destructive: stops services or changes hosts (run with --destructive)")
    for item in items:
        if item.get_closest_marker("destructive"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def inventory(request) -> str:
    inv = request.config.getoption("ansible_inventory", None) or os.environ.get("MOLECULE_INVENTORY_FILE")
    if not inv:
        raise pytest.UsageError("pass --ansible-inventory=<inventory> (Molecule does this itself)")
    return inv


@pytest.fixture(scope="session")
def backends(inventory) -> dict[str, testinfra.host.Host]:
    hosts = group_hosts(inventory, BACKEND_GROUP)
    assert hosts, f"inventory has no hosts in group {BACKEND_GROUP}"
    return hosts


@pytest.fixture(scope="session")
def loadbalancers(inventory) -> dict[str, testinfra.host.Host]:
    hosts = group_hosts(inventory, LB_GROUP)
    assert hosts, f"inventory has no hosts in group {LB_GROUP}"
    return hosts


@pytest.fixture(scope="session")
def vip(inventory, loadbalancers) -> str | None:
    """The load balancers' floating address, if they have one (keepalived_vip_addresses)."""
    addresses = AnsibleRunner(inventory).get_variables(next(iter(loadbalancers))).get("keepalived_vip_addresses")
    return addresses[0].split("/")[0] if addresses else None


@pytest.fixture(scope="session")
def lb(loadbalancers) -> testinfra.host.Host:
    return next(iter(loadbalancers.values()))


@pytest.fixture(scope="session")
def lb_url(lb) -> str:
    """The load balancer's main URL from its own loopback: HTTPS when TLS is on."""
    return "https://127.0.0.1:443" if lb.socket("tcp://0.0.0.0:443").is_listening else "http://127.0.0.1:80"


@pytest.fixture(scope="session")
def backend_addresses(backends) -> dict[str, str]:
    return {name: primary_address(host) for name, host in backends.items()}


@pytest.fixture(scope="session")
def names(backends) -> dict[str, str]:
    """Inventory name -> host name (what X-Backend says), for the backends."""
    return hostname_map(backends)
