"""The lbi_upstream module as Ansible runs it: its arguments, read-only calls and changes."""

from __future__ import annotations

import lbi_nginx
from conftest import load_module, run_module, server

lbi_upstream = load_module("plugins/modules/lbi_upstream.py")


def run(tree, capsys, **args) -> dict:
    """Runs the module against the tree and returns its JSON result."""
    return run_module(lbi_upstream, capsys, {"conf_dir": str(tree.live), "nginx": str(tree.nginx), **args})


def test_a_read_needs_no_staging_dir_and_changes_nothing(tree, capsys):
    tree.write_state([server("web1"), server("web2", down=["health"])])
    result = run(tree, capsys)
    assert result["rotation"] == {"web1": "in rotation", "web2": "down (health)"}
    assert not result["changed"]
    assert not tree.staging.exists() and tree.nginx_tests() == 0


def test_a_change_without_a_staging_dir_is_refused_by_name(tree, capsys):
    tree.write_state([server("web1"), server("web2")])
    result = run(tree, capsys, names=["web1"], state="down")
    assert result["failed"] and "staging_dir" in result["msg"]
    assert lbi_nginx.rotation(tree.state()) == {"web1": "in rotation", "web2": "in rotation"}


def test_down_then_up_with_the_inventory_drain(tree, capsys):
    tree.write_state([server("web1"), server("web2"), server("web3")])
    staged = {"staging_dir": str(tree.staging)}
    down = run(tree, capsys, names=["web1", "web2"], state="down", drain={"web2": "true"}, **staged)
    assert down["changed"] and down["reload"]
    assert lbi_nginx.rotation(tree.state()) == {
        "web1": "down (operator)",
        "web2": "down (drain, operator)",
        "web3": "in rotation",
    }
    up = run(tree, capsys, names=["web1", "web2"], state="up", drain={"web2": "true"}, **staged)
    assert up["rotation"] == {"web1": "in rotation", "web2": "down (drain)", "web3": "in rotation"}


def test_clearing_health_without_names_brings_every_checked_out_backend_back(tree, capsys):
    tree.write_state([server("web1", down=["health"]), server("web2", down=["health", "operator"]), server("web3")])
    result = run(tree, capsys, clear_health=True, staging_dir=str(tree.staging))
    assert result["changed"]
    assert result["rotation"] == {"web1": "in rotation", "web2": "down (operator)", "web3": "in rotation"}
    assert lbi_nginx.rotation(tree.state()) == result["rotation"]


def test_an_unknown_backend_changes_nothing_on_this_load_balancer(tree, capsys):
    before = tree.write_state([server("web1"), server("web2")])
    result = run(tree, capsys, names=["web1", "web9"], state="down", staging_dir=str(tree.staging))
    assert result["failed"] and "does not list web9" in result["msg"] and "Nothing was changed" in result["msg"]
    assert tree.state() == before
