"""The filters of plugins/filter/lbi.py that build and check the upstream from inventory."""

from __future__ import annotations

import base64

import lbi
import pytest

DEFAULTS = {"port": 8000, "weight": 1, "max_fails": 1, "fail_timeout": 5}


def hostvars(**hosts):
    facts = {"ansible_facts": {"default_ipv4": {"address": "10.0.0.9"}}}
    return {name: {**facts, **values} for name, values in hosts.items()}


def test_addresses_are_bracketed_only_for_ipv6():
    assert [lbi.lbi_host(a) for a in ("10.0.0.1", "::1", "[::1]", "web1")] == ["10.0.0.1", "[::1]", "[::1]", "web1"]
    assert lbi.lbi_hostport("fd00::5", 80) == "[fd00::5]:80"


def test_servers_take_host_vars_then_the_role_defaults_then_facts():
    hosts = hostvars(web1={"backend_listen_address": "10.0.0.1", "lb_weight": 3, "lb_backup": True}, web2={})
    one, two = lbi.lbi_servers(["web1", "web2"], hosts, DEFAULTS)
    assert one == {"name": "web1", "address": "10.0.0.1", "port": 8000, "weight": 3, "max_fails": 1,
                   "fail_timeout": 5, "backup": True, "drain": False}  # fmt: skip
    assert (two["address"], two["weight"], two["backup"]) == ("10.0.0.9", 1, False)


def servers(**overrides):
    hosts = hostvars(web1={"backend_listen_address": "10.0.0.1"}, web2={"backend_listen_address": "10.0.0.2"})
    for name, values in overrides.items():
        hosts[name].update(values)
    return lbi.lbi_servers(["web1", "web2"], hosts, DEFAULTS)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"lb_weight": 0}, "lb_weight=0 of backend web2 must be a whole number >= 1"),
        ({"lb_weight": "-1"}, "lb_weight=-1 of backend web2 must be a whole number >= 1"),
        ({"backend_port": 70000}, "backend_port=70000 of backend web2 must be a port from 1 to 65535"),
        ({"lb_max_fails": True}, "lb_max_fails=True of backend web2 must be a whole number >= 0"),
        ({"lb_drain": "false"}, "lb_drain=false of backend web2 must be true or false"),
        (
            {"backend_listen_address": "a b"},
            "backend_listen_address=a b of backend web2 must be an IP address or host name",
        ),
        ({"backend_listen_address": "10.0.0.1"}, "backends must not share an address and port"),
    ],
)
def test_each_broken_rule_is_one_message_naming_the_host_var_and_backend(overrides, message):
    problems = lbi.lbi_server_problems(servers(web2=overrides), "round_robin", "backends")
    assert len(problems) == 1
    assert problems[0].startswith(message)


def test_backups_need_an_algorithm_that_has_them_and_a_primary_must_remain():
    assert lbi.lbi_server_problems(servers(web1={"lb_backup": True}), "round_robin", "backends") == []
    [problem] = lbi.lbi_server_problems(servers(web1={"lb_backup": True}), "ip_hash", "backends")
    assert problem.startswith("lb_backup is true on web1 but lb_algorithm=ip_hash")
    # One drained, the other a backup: neither all drained nor all backups, and nothing serves.
    [problem] = lbi.lbi_server_problems(servers(web1={"lb_drain": True}, web2={"lb_backup": True}), "round_robin", "g")
    assert problem.startswith("every backend of g has lb_drain=true or lb_backup=true")


def test_the_same_port_on_two_addresses_is_fine_and_a_shared_ipv6_endpoint_is_named_bracketed():
    assert lbi.lbi_server_problems(servers(web2={"backend_listen_address": "fd00::1"}), "round_robin", "g") == []
    same = servers(web1={"backend_listen_address": "fd00::1"}, web2={"backend_listen_address": "fd00::1"})
    [problem] = lbi.lbi_server_problems(same, "round_robin", "g")
    assert "web1=[fd00::1]:8000, web2=[fd00::1]:8000" in problem


def test_sandbox_drop_in_applies_changes_to_the_shared_settings():
    text = lbi.lbi_systemd_sandbox({"ProtectProc": None, "ReadWritePaths": ["/var/log", "-/srv"], "UMask": "0077"})
    lines = text.splitlines()
    assert lines[0] == "[Service]" and text.endswith("\n")
    assert "ReadWritePaths=/var/log -/srv" in lines and "UMask=0077" in lines
    assert not any(line.startswith("ProtectProc=") for line in lines)
    assert "CapabilityBoundingSet=" in lines and "NoNewPrivileges=yes" in lines
    assert len(lines) == len(set(line.split("=")[0] for line in lines)), "each setting once"


def test_sandbox_drop_in_puts_unit_settings_in_their_own_section():
    text = lbi.lbi_systemd_sandbox(unit={"After": "nginx.service"})
    assert text.startswith("[Unit]\nAfter=nginx.service\n\n[Service]\n")
    assert text.count("[Unit]") == 1 and "After=" not in text.split("[Service]")[1]


def _slurped(host, name, text):
    return {"item": [host, name], "content": base64.b64encode(text.encode()).decode()}


def test_first_pair_is_the_first_host_in_order_that_has_both_files():
    slurped = [
        _slurped("lb2", "lbi.crt", "crt2"),
        _slurped("lb2", "lbi.key", "key2"),
        _slurped("lb1", "lbi.crt", "crt1"),
        {"item": ["lb1", "lbi.key"], "failed": True, "msg": "file not found"},
        {"item": ["lb3", "lbi.crt"], "unreachable": True},
        _slurped("lb3", "lbi.key", "key3"),
    ]
    assert lbi.lbi_first_pair(slurped, ["lb1", "lb3", "lb2"]) == {"lbi.crt": "crt2", "lbi.key": "key2"}
    assert lbi.lbi_first_pair(slurped, ["lb1", "lb3"]) == {}
    assert lbi.lbi_first_pair([], ["lb1"]) == {}


def test_one_wheelhouse_target_per_python_version_and_architecture():
    def facts(major, minor, micro, arch):
        return {"python": {"version": {"major": major, "minor": minor, "micro": micro}}, "architecture": arch}

    hosts = [facts(3, 11, 2, "x86_64"), facts(3, 11, 9, "x86_64"), facts(3, 13, 5, "x86_64")]
    hosts.append(facts(3, 11, 2, "aarch64"))
    assert [lbi.lbi_python_target(f) for f in hosts] == ["3.11 x86_64", "3.11 x86_64", "3.13 x86_64", "3.11 aarch64"]
