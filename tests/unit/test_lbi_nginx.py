"""The upstream's server list and the tested swap of NGINX's files (module_utils/lbi_nginx.py)."""

from __future__ import annotations

import os

import lbi_nginx
import pytest
from conftest import server


def test_a_server_line_carries_every_parameter_and_no_reasons():
    line = lbi_nginx.server_line(
        lbi_nginx.make_state([server("web1", weight=3, backup=True, down=["drain"])])["servers"][0]
    )
    assert line == "server 10.0.0.11:8000 weight=3 max_fails=1 fail_timeout=5s backup down;  # web1"
    assert (
        lbi_nginx.server_line(server("web2")) == "server 10.0.0.12:8000 weight=1 max_fails=1 fail_timeout=5s;  # web2"
    )


def test_ipv6_addresses_are_bracketed():
    assert lbi_nginx.endpoint(server("web1", address="fd00::11")) == "[fd00::11]:8000"


@pytest.mark.parametrize(
    "overrides,named",
    [
        ({"port": "80a"}, "port='80a'"),
        ({"weight": True}, "weight=True"),
        ({"backup": "false"}, "backup='false'"),
        ({"address": "10.0.0.1; include /etc/passwd"}, "address="),
        ({"name": "web 1"}, "name='web 1'"),
        ({"down": ["maintenance"]}, "down=['maintenance']"),
    ],
)
def test_bad_server_entries_are_refused_naming_the_field(overrides, named):
    with pytest.raises(lbi_nginx.NginxError, match=named.replace("[", r"\[").replace("]", r"\]")):
        lbi_nginx.make_state([{**server("web1"), **overrides}])


def test_a_backend_listed_twice_is_refused():
    with pytest.raises(lbi_nginx.NginxError, match="more than once: web1"):
        lbi_nginx.make_state([server("web1"), server("web1", address="10.0.0.99")])


def test_numbers_from_inventory_strings_become_numbers():
    state = lbi_nginx.make_state([server("web1", port="8001", weight="2", max_fails="0", fail_timeout="9")])
    assert state["servers"][0] == server("web1", port=8001, weight=2, max_fails=0, fail_timeout=9)


def test_the_inventory_drains_and_the_health_verdict_survives_a_new_render():
    previous = lbi_nginx.make_state([server("web1", down=["health", "operator"]), server("web2", down=["health"])])
    inventory = [
        {**server("web1"), "drain": True},
        {**server("web2", address="10.0.0.99")},  # moved: the old verdict was about another address
        {**server("web3")},
    ]
    kept = lbi_nginx.from_inventory(inventory, previous, keep_health=True)
    assert [s["down"] for s in kept["servers"]] == [["drain", "health"], [], []]
    forgot = lbi_nginx.from_inventory(inventory, previous, keep_health=False)
    assert [s["down"] for s in forgot["servers"]] == [["drain"], [], []]


def test_set_reason_changes_only_the_named_servers_and_refuses_unknown_ones():
    state = lbi_nginx.make_state([server("web1"), server("web2", down=["drain"])])
    new = lbi_nginx.set_reason(state, "operator", {"web1": True, "web2": True})
    assert lbi_nginx.rotation(new) == {"web1": "down (operator)", "web2": "down (drain, operator)"}
    back = lbi_nginx.set_reason(new, "operator", {"web2": False})
    assert lbi_nginx.rotation(back) == {"web1": "down (operator)", "web2": "down (drain)"}
    assert lbi_nginx.rotation(state) == {"web1": "in rotation", "web2": "down (drain)"}, "the input was changed"
    with pytest.raises(lbi_nginx.NginxError, match="not in the upstream: web7"):
        lbi_nginx.set_reason(state, "operator", {"web7": True})


def test_health_takes_failing_servers_out_and_brings_passing_ones_back():
    state = lbi_nginx.make_state([server("web1"), server("web2", down=["health"]), server("web3")])
    new, kept = lbi_nginx.apply_health(state, failing={"web1"}, passing={"web2", "web3"})
    assert lbi_nginx.rotation(new) == {"web1": "down (health)", "web2": "in rotation", "web3": "in rotation"}
    assert kept == []


def test_health_never_takes_the_last_server_in_rotation_out():
    state = lbi_nginx.make_state([server("web1", down=["drain"]), server("web2"), server("web3", down=["health"])])
    new, kept = lbi_nginx.apply_health(state, failing={"web2", "web3"}, passing=set())
    assert kept == ["web2"]
    assert lbi_nginx.rotation(new)["web2"] == "in rotation"
    # As soon as another server passes, the failing one leaves.
    new, kept = lbi_nginx.apply_health(new, failing={"web2"}, passing={"web3"})
    assert (kept, lbi_nginx.rotation(new)) == (
        [],
        {"web1": "down (drain)", "web2": "down (health)", "web3": "in rotation"},
    )


def test_a_healthy_backup_lets_every_failing_primary_leave():
    state = lbi_nginx.make_state([server("web1"), server("web2"), server("web3", backup=True)])
    new, kept = lbi_nginx.apply_health(state, failing={"web1", "web2"}, passing={"web3"})
    assert kept == [] and lbi_nginx.rotation(new)["web3"] == "in rotation"
    assert "backup;" in lbi_nginx.render_conf(new).splitlines()[3]


def test_a_change_goes_live_only_after_the_staged_tree_passed(tree):
    tree.write_state([server("web1"), server("web2")])
    new = lbi_nginx.set_reason(lbi_nginx.read_state(str(tree.live)), "operator", {"web2": True})
    changes = lbi_nginx.plan(str(tree.live), lbi_nginx.upstream_files(new))
    assert [rel for rel, _, _ in changes] == [lbi_nginx.SERVERS_CONF, lbi_nginx.SERVERS_JSON]
    with lbi_nginx.locked():
        assert lbi_nginx.apply(str(tree.live), str(tree.staging), changes, nginx=str(tree.nginx)) is True
    assert tree.nginx_tests() == 1
    assert " down;  # web2" in (tree.live / lbi_nginx.SERVERS_CONF).read_text()
    assert (tree.staging / lbi_nginx.SERVERS_CONF).read_text() == (tree.live / lbi_nginx.SERVERS_CONF).read_text()
    assert lbi_nginx.plan(str(tree.live), lbi_nginx.upstream_files(new)) == [], "not idempotent"


def test_a_rejected_change_leaves_every_live_file_as_it_was(tree):
    tree.write_state([server("web1")])
    before = {p: p.read_text() for p in tree.live.rglob("*") if p.is_file()}
    changes = lbi_nginx.plan(str(tree.live), {"conf.d/site.conf": "BROKEN;\n", "nginx.conf": "include conf.d/*;\n"})
    with pytest.raises(lbi_nginx.NginxError, match='unknown directive "BROKEN"'):
        lbi_nginx.apply(str(tree.live), str(tree.staging), changes, nginx=str(tree.nginx))
    assert {p: p.read_text() for p in tree.live.rglob("*") if p.is_file()} == before


def test_a_change_only_to_the_state_file_needs_no_test_and_no_reload(tree):
    state = tree.write_state([server("web1", down=["operator"])])
    new = lbi_nginx.set_reason(state, "health", {"web1": True})  # already down: NGINX sees no difference
    changes = lbi_nginx.plan(str(tree.live), lbi_nginx.upstream_files(new))
    assert [rel for rel, _, _ in changes] == [lbi_nginx.SERVERS_JSON]
    assert lbi_nginx.apply(str(tree.live), str(tree.staging), changes, nginx=str(tree.nginx)) is False
    assert tree.nginx_tests() == 0
    assert tree.state()["servers"][0]["down"] == ["health", "operator"]


def test_check_mode_tests_but_writes_nothing_and_removals_are_planned(tree):
    (tree.live / "sites-enabled").mkdir()
    os.symlink("/nowhere/default", tree.live / "sites-enabled" / "default")
    changes = lbi_nginx.plan(str(tree.live), {"conf.d/a.conf": "x;\n"}, ["sites-enabled/default", "conf.d/none"])
    assert [(rel, after) for rel, _, after in changes] == [("conf.d/a.conf", "x;\n"), ("sites-enabled/default", None)]
    lbi_nginx.apply(str(tree.live), str(tree.staging), changes, check=True, nginx=str(tree.nginx))
    assert tree.nginx_tests() == 1
    assert not (tree.live / "conf.d" / "a.conf").exists() and os.path.islink(tree.live / "sites-enabled" / "default")
    lbi_nginx.apply(str(tree.live), str(tree.staging), changes, nginx=str(tree.nginx))
    assert (tree.live / "conf.d" / "a.conf").read_text() == "x;\n"
    assert not os.path.lexists(tree.live / "sites-enabled" / "default")


def test_check_mode_on_a_host_without_nginx_reports_without_testing(tree):
    missing = tree.root / "no-nginx"
    changes = lbi_nginx.plan(str(missing), {"nginx.conf": "events {}\n"})
    assert lbi_nginx.apply(str(missing), str(tree.staging), changes, check=True, nginx=str(tree.nginx)) is True
    assert tree.nginx_tests() == 0 and not missing.exists()


def test_files_are_replaced_whole_with_their_mode(tree):
    path = tree.live / "conf.d" / "x.conf"
    lbi_nginx.write_file(str(path), "one\n")
    lbi_nginx.write_file(str(path), "two\n")
    assert path.read_text() == "two\n" and oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in path.parent.iterdir()] == ["x.conf"], "a temporary file was left behind"


def test_a_second_writer_waits_for_the_lock_and_gives_up_naming_it(tree):
    busy = pytest.raises(lbi_nginx.NginxError, match=r"holds .*lbi-nginx\.lock")
    with lbi_nginx.locked(), busy, lbi_nginx.locked(timeout=0.2):
        pass
    with lbi_nginx.locked(timeout=0.2):  # free again
        pass


def test_a_state_file_that_is_not_json_is_refused(tree):
    (tree.live / "lbi").mkdir()
    (tree.live / lbi_nginx.SERVERS_JSON).write_text("{not json")
    with pytest.raises(lbi_nginx.NginxError, match="is not JSON"):
        lbi_nginx.read_state(str(tree.live))
    assert lbi_nginx.read_state(str(tree.root)) is None


def test_waiting_for_old_workers_ends_when_they_are_gone_or_names_those_left(tmp_path):
    (tmp_path / "101").mkdir()
    (tmp_path / "102").mkdir()
    assert lbi_nginx.wait_gone([101, 102, 103], 0.2, proc=str(tmp_path)) == [101, 102]
    (tmp_path / "101").rmdir()
    (tmp_path / "102").rmdir()
    assert lbi_nginx.wait_gone([101, 102], 5, proc=str(tmp_path)) == []


def test_workers_are_those_of_the_units_own_master(monkeypatch):
    calls = []

    def fake_run(argv, **_kwargs):
        calls.append(argv)
        out = "4242\n" if argv[0] == "systemctl" else "4243\n4244\n"
        return type("Done", (), {"stdout": out, "returncode": 0})()

    monkeypatch.setattr(lbi_nginx.subprocess, "run", fake_run)
    assert lbi_nginx.worker_pids("nginx.service") == [4243, 4244]
    assert calls[1][:3] == ["pgrep", "-P", "4242"]
    monkeypatch.setattr(lbi_nginx.subprocess, "run", lambda argv, **_k: type("D", (), {"stdout": "0\n"})())
    assert lbi_nginx.worker_pids("nginx.service") == []


def test_secret_files_are_root_only_in_the_staged_and_the_live_tree(tree):
    changes = lbi_nginx.plan(
        str(tree.live), {"tls/site.crt": "plain\n", "tls/site.pem": "secret\n", "conf.d/x.conf": "plain\n"}
    )
    lbi_nginx.apply(
        str(tree.live), str(tree.staging), changes, nginx=str(tree.nginx), secret=frozenset({"tls/site.pem"})
    )
    for root in (tree.live, tree.staging):
        assert oct((root / "tls" / "site.pem").stat().st_mode & 0o777) == "0o600"
        assert oct((root / "tls").stat().st_mode & 0o777) == "0o700"
        assert oct((root / "conf.d" / "x.conf").stat().st_mode & 0o777) == "0o644"
