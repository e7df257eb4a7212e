"""The backend role: gunicorn under a hardened systemd unit, installed without an index."""

from __future__ import annotations

import json
import re

import pytest

from helpers import http

APP = "lbapp"
UNIT = f"{APP}.service"


def test_service_running_and_enabled(backends):
    for name, host in backends.items():
        svc = host.service(UNIT)
        assert svc.is_running, f"{UNIT} not running on {name}"
        assert svc.is_enabled, f"{UNIT} not enabled on {name}"


def test_service_account_is_a_locked_system_user(backends):
    for host in backends.values():
        user = host.user(APP)
        assert user.exists
        assert user.uid < 1000, "a system account is expected"
        assert user.shell == "/usr/sbin/nologin"
        procs = host.process.filter(comm="gunicorn")
        assert procs, "no gunicorn processes"
        assert {p.user for p in procs} == {APP}


def test_listens_only_on_its_primary_address(backends, backend_addresses, backend_ports):
    for name, host in backends.items():
        address, port = backend_addresses[name], backend_ports[name]
        assert host.socket(f"tcp://{address}:{port}").is_listening
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening
        assert not host.socket(f"tcp://127.0.0.1:{port}").is_listening


def test_each_backend_answers_health_itself(backends, backend_urls):
    for name, host in backends.items():
        (answer,) = http(host, f"{backend_urls[name]}/health")
        assert answer["status"] == 200
        body = json.loads(answer["body"])
        assert body["status"] == "healthy"
        assert body["host"] == host.check_output("hostname")
        assert body["display_name"] == name


def test_installed_from_shipped_wheels_into_a_release_venv(backends):
    for host in backends.values():
        current = host.file(f"/opt/{APP}/current")
        assert current.is_symlink
        release = current.linked_to
        assert re.search(r"/opt/lbapp/releases/[0-9a-f]{16}$", release)
        assert host.file(f"{release}/.installed").exists
        wheels = host.check_output(f"ls {release}/wheels")
        assert re.search(r"lbapp-[^ ]+-py3-none-any\.whl", wheels)
        # The venv and code belong to root: the service account cannot modify its own code.
        assert host.file(f"{release}/venv").user == "root"
        pip_list = host.check_output(f"{release}/venv/bin/pip list --format=freeze --disable-pip-version-check")
        assert "gunicorn==" in pip_list and "lbapp==" in pip_list


@pytest.mark.parametrize(
    "prop,expected",
    [
        ("User", APP),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("CapabilityBoundingSet", ""),
        ("KillMode", "mixed"),
        ("Type", "notify"),
    ],
)
def test_unit_is_hardened(backends, prop, expected):
    for name, host in backends.items():
        value = host.check_output(f"systemctl show -p {prop} --value {UNIT}")
        assert value == expected, f"{name}: {prop}={value!r}"


def test_unit_reaches_only_ip_and_unix_sockets(backends):
    for name, host in backends.items():
        value = host.check_output(f"systemctl show -p RestrictAddressFamilies --value {UNIT}")
        assert set(value.split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}, f"{name}: {value}"


@pytest.mark.destructive
def test_reload_keeps_serving_and_master(backends, backend_urls):
    """A config reload (SIGHUP) replaces the workers but keeps the master and the socket."""
    name, host = next(iter(backends.items()))
    before = host.check_output(f"systemctl show -p MainPID --value {UNIT}")
    host.run_expect([0], f"systemctl reload {UNIT}")
    answers = http(host, f"{backend_urls[name]}/health", count=20)
    assert all(a["status"] == 200 for a in answers)
    assert host.check_output(f"systemctl show -p MainPID --value {UNIT}") == before
