"""Fixtures shared by both scenarios' suites (tests/default, tests/zero_downtime).

The suites run against any inventory: under Molecule (which passes --ansible-inventory)
or by hand, e.g.
    pytest tests/default --ansible-inventory=inventory/lab
tests/pytest.ini makes tests/ the rootdir whichever directory pytest is given, so this
file is always loaded. Plain functions live in helpers.py: test modules import those,
never this file.
"""

from __future__ import annotations

import functools
import os

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import BACKEND_GROUP, LB_GROUP, group_hosts, hostname_map, primary_address, setting


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
def role_var(inventory):
    """role_var(host, name): a role variable as that inventory host gets it (helpers.setting)."""
    return functools.partial(setting, inventory)


@pytest.fixture(scope="session")
def lb_name(loadbalancers) -> str:
    return next(iter(loadbalancers))


@pytest.fixture(scope="session")
def lb(loadbalancers) -> testinfra.host.Host:
    return next(iter(loadbalancers.values()))


@pytest.fixture(scope="session")
def lb_http_url(role_var, lb_name) -> str:
    """The load balancer's plain HTTP port, from its own loopback."""
    return f"http://127.0.0.1:{role_var(lb_name, 'lb_listen_port')}"


@pytest.fixture(scope="session")
def lb_url(role_var, lb_name, lb_http_url) -> str:
    """The load balancer's main URL from its own loopback: HTTPS when TLS is on."""
    return (
        f"https://127.0.0.1:{role_var(lb_name, 'lb_tls_port')}" if role_var(lb_name, "lb_tls_enabled") else lb_http_url
    )


@pytest.fixture(scope="session")
def backend_addresses(backends) -> dict[str, str]:
    return {name: primary_address(host) for name, host in backends.items()}


@pytest.fixture(scope="session")
def backend_ports(role_var, backends) -> dict[str, int]:
    return {name: int(role_var(name, "backend_port")) for name in backends}


@pytest.fixture(scope="session")
def backend_urls(backend_addresses, backend_ports) -> dict[str, str]:
    """Each backend's own URL (no trailing slash), as the load balancers reach it."""
    return {name: f"http://{address}:{backend_ports[name]}" for name, address in backend_addresses.items()}


@pytest.fixture(scope="session")
def names(backends) -> dict[str, str]:
    """Inventory name -> host name (what X-Backend says), for the backends."""
    return hostname_map(backends)
