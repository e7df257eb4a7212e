"""The active health checker (files/lbi_healthcheck.py), with scripted probes and a fake nginx."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lbi_healthcheck
import lbi_nginx
import pytest
from conftest import server

OK = lbi_healthcheck.Result(True, "HTTP 200", 0.002)
HUNG = lbi_healthcheck.Result(False, "timed out after 0.5 s", 0.5)


def config(tree, **overrides) -> dict:
    values = {
        "conf_dir": str(tree.live),
        "staging_dir": str(tree.staging),
        "path": "/health",
        "interval": 1.0,
        "timeout": 0.5,
        "fall": 2,
        "rise": 2,
        "status_file": str(tree.root / "run" / "status.json"),
        "textfile": str(tree.root / "textfile" / "lbi_healthcheck.prom"),
        "nginx_unit": "nginx.service",
        "lock_timeout": 0.2,
    }
    values.update(overrides)
    return values


class Scripted:
    """A checker whose probes answer what the test says, per backend name."""

    def __init__(self, tree, **overrides) -> None:
        self.tree = tree
        self.answers: dict = {}
        self.reloads = 0
        self.lines: list = []
        (tree.root / "textfile").mkdir(exist_ok=True)
        self.checker = lbi_healthcheck.Checker(
            config(tree, **overrides),
            prober=self.probe,
            reloader=self.reload,
            log=self.lines.append,
            nginx=str(tree.nginx),
        )

    def probe(self, address, port, path, timeout):
        name = next(s["name"] for s in lbi_nginx.read_state(str(self.tree.live))["servers"] if s["address"] == address)
        return self.answers.get(name, OK)

    def reload(self, unit) -> bool:
        self.reloads += 1
        return True

    def rounds(self, count: int) -> None:
        for _ in range(count):
            self.checker.run_once()

    def rotation(self) -> dict:
        return lbi_nginx.rotation(lbi_nginx.read_state(str(self.tree.live)))

    def status(self) -> dict:
        return json.loads((self.tree.root / "run" / "status.json").read_text())


@pytest.fixture
def tier(tree, monkeypatch):
    tree.write_state([server("web1"), server("web2"), server("web3")])
    # The checker's lbi_nginx is the same module object as the test's.
    assert lbi_healthcheck.lbi_nginx is lbi_nginx
    return Scripted(tree)


def test_a_healthy_tier_is_never_written_nor_reloaded(tier):
    before = (tier.tree.live / lbi_nginx.SERVERS_CONF).stat().st_mtime_ns
    tier.rounds(20)
    assert tier.reloads == 0 and tier.tree.nginx_tests() == 0
    assert (tier.tree.live / lbi_nginx.SERVERS_CONF).stat().st_mtime_ns == before
    assert all(s["healthy"] and s["in_rotation"] and s["passes"] == 20 for s in tier.status()["servers"].values())


def test_a_hung_backend_leaves_after_fall_failures_and_returns_after_rise_passes(tier):
    tier.answers["web2"] = HUNG
    tier.rounds(1)
    assert tier.rotation()["web2"] == "in rotation" and tier.reloads == 0, "out after one failure (fall is 2)"
    tier.rounds(1)
    assert tier.rotation()["web2"] == "down (health)" and tier.reloads == 1
    assert tier.tree.nginx_tests() == 1, "the change was not tested first"
    assert any("web2" in line and "timed out after 0.5 s" in line for line in tier.lines), tier.lines
    tier.rounds(5)
    assert tier.reloads == 1, "reloaded again while nothing changed"
    del tier.answers["web2"]
    tier.rounds(1)
    assert tier.rotation()["web2"] == "down (health)"
    tier.rounds(1)
    assert tier.rotation()["web2"] == "in rotation" and tier.reloads == 2
    status = tier.status()["servers"]["web2"]
    assert status["transitions"] == 2 and status["rotation_changed_at"] is not None


def test_rounds_come_twice_as_often_while_a_verdict_is_about_to_change(tier):
    tier.rounds(1)
    assert tier.checker.next_delay() == 1.0
    tier.answers["web2"] = HUNG
    tier.rounds(1)
    assert tier.checker.next_delay() == 0.5, "one failure of a healthy backend"
    tier.rounds(1)
    assert tier.checker.next_delay() == 1.0, "out: nothing is about to change"
    del tier.answers["web2"]
    tier.rounds(1)
    assert tier.checker.next_delay() == 0.5, "one pass of an unhealthy backend"


def test_a_draining_backend_leaves_too(tier):
    tier.answers["web3"] = lbi_healthcheck.Result(False, "HTTP 503 (draining)", 0.003)
    tier.rounds(2)
    assert tier.rotation()["web3"] == "down (health)"


def test_the_last_server_in_rotation_stays_whatever_its_checks_say(tier):
    tier.answers.update({"web1": HUNG, "web2": HUNG, "web3": HUNG})
    tier.rounds(2)
    assert tier.rotation() == dict.fromkeys(["web1", "web2", "web3"], "in rotation")
    assert tier.reloads == 0
    assert sum("stays in rotation" in line for line in tier.lines) == 3
    tier.rounds(3)
    assert sum("stays in rotation" in line for line in tier.lines) == 3, "logged again every round"
    tier.answers["web3"] = OK
    tier.rounds(2)
    assert tier.rotation() == {"web1": "down (health)", "web2": "down (health)", "web3": "in rotation"}


def test_a_backend_out_for_another_reason_gets_its_verdict_without_a_reload(tier):
    state = lbi_nginx.set_reason(lbi_nginx.read_state(str(tier.tree.live)), "operator", {"web1": True})
    for rel, content in lbi_nginx.upstream_files(state).items():
        lbi_nginx.write_file(str(tier.tree.live / rel), content)
    tier.answers["web1"] = HUNG
    tier.rounds(3)
    assert tier.rotation()["web1"] == "down (health, operator)"
    assert tier.reloads == 0 and tier.tree.nginx_tests() == 0


def test_flapping_costs_at_most_one_reload_per_verdict_change(tier):
    # Down for 3 rounds, up for 3, six times over: fall 2 and rise 2 see each phase once.
    for _ in range(6):
        tier.answers["web2"] = HUNG
        tier.rounds(3)
        del tier.answers["web2"]
        tier.rounds(3)
    assert tier.reloads == 12 == tier.status()["servers"]["web2"]["transitions"]
    # Shorter than fall, it never leaves at all.
    for _ in range(6):
        tier.answers["web2"] = HUNG
        tier.rounds(1)
        del tier.answers["web2"]
        tier.rounds(1)
    assert tier.reloads == 12


def test_it_waits_for_another_writer_and_catches_up_afterwards(tier):
    tier.answers["web2"] = HUNG
    with lbi_nginx.locked():
        tier.rounds(3)
        assert tier.rotation()["web2"] == "in rotation"
        assert sum("cannot change the upstream now" in line for line in tier.lines) == 1
    tier.rounds(1)
    assert tier.rotation()["web2"] == "down (health)" and tier.status()["last_error"] == ""


def test_a_configuration_nginx_rejects_is_left_alone_and_tried_again(tier):
    (tier.tree.live / "conf.d" / "bad.conf").write_text("BROKEN;\n")  # someone broke the live tree by hand
    tier.answers["web2"] = HUNG
    tier.rounds(4)
    assert tier.rotation()["web2"] == "in rotation" and tier.reloads == 0
    assert "rejected" in tier.status()["last_error"]
    (tier.tree.live / "conf.d" / "bad.conf").unlink()
    tier.rounds(1)
    assert tier.rotation()["web2"] == "down (health)"


def test_a_site_yml_run_keeps_the_verdict_and_a_moved_backend_starts_afresh(tier):
    tier.answers["web2"] = HUNG
    tier.rounds(2)
    inventory = [{**server(n), "drain": False} for n in ("web1", "web2", "web3")]
    kept = lbi_nginx.from_inventory(inventory, lbi_nginx.read_state(str(tier.tree.live)), keep_health=True)
    assert lbi_nginx.rotation(kept)["web2"] == "down (health)"
    moved = lbi_nginx.from_inventory(
        [*inventory[:1], {**server("web2", address="10.0.0.99"), "drain": False}, inventory[2]], kept, True
    )
    for rel, content in lbi_nginx.upstream_files(moved).items():
        lbi_nginx.write_file(str(tier.tree.live / rel), content)
    del tier.answers["web2"]
    tier.rounds(3)
    assert tier.rotation()["web2"] == "in rotation" and tier.status()["servers"]["web2"]["transitions"] == 0


def test_metrics_for_the_textfile_collector(tier):
    tier.answers["web2"] = HUNG
    tier.rounds(2)
    text = (tier.tree.root / "textfile" / "lbi_healthcheck.prom").read_text()
    assert 'lbi_healthcheck_backend_healthy{backend="web2"} 0' in text
    assert 'lbi_healthcheck_backend_in_rotation{backend="web2"} 0' in text
    assert 'lbi_healthcheck_backend_in_rotation{backend="web1"} 1' in text
    assert "lbi_healthcheck_reloads_total 1" in text
    assert 'lbi_healthcheck_transitions_total{backend="web2"} 1' in text
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(families) == len(set(families)) == 6


def test_configuration_errors_name_the_key():
    tree_config = {
        "conf_dir": "/etc/nginx",
        "staging_dir": "/var/lib/x",
        "path": "/health",
        "interval": 1,
        "timeout": 0.5,
        "fall": 2,
        "rise": 2,
        "status_file": "/run/x.json",
        "textfile": "",
        "nginx_unit": "nginx.service",
        "lock_timeout": 10,
    }
    assert lbi_healthcheck.load_config(json.dumps(tree_config))["interval"] == 1.0
    for key, value, named in [
        ("timeout", 1, "timeout=1.0 must be shorter than interval=1.0"),
        ("fall", True, "fall=True"),
        ("fall", 0, "fall=0"),
        ("path", "health", "path='health'"),
        ("textfile", "/x.txt", "textfile='/x.txt'"),
    ]:
        with pytest.raises(lbi_healthcheck.ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")):
            lbi_healthcheck.load_config(json.dumps({**tree_config, key: value}))
    with pytest.raises(lbi_healthcheck.ConfigError, match="rise is missing"):
        lbi_healthcheck.load_config(json.dumps({k: v for k, v in tree_config.items() if k != "rise"}))
    with pytest.raises(lbi_healthcheck.ConfigError, match="unknown keys: intervall"):
        lbi_healthcheck.load_config(json.dumps({**tree_config, "intervall": 2}))


def test_check_config_exit_status(tmp_path, capsys):
    bad = tmp_path / "c.json"
    bad.write_text("{}")
    assert lbi_healthcheck.main(["--check-config", str(bad)]) == 1
    assert "is missing" in capsys.readouterr().err


# --- real probes on loopback ------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, delay = self.server.answer
        time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def backend():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.answer = (200, 0.0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_probe_passes_only_a_200_on_time(backend):
    port = backend.server_address[1]
    assert lbi_healthcheck.probe("127.0.0.1", port, "/health", 0.5).ok
    backend.answer = (503, 0.0)
    assert lbi_healthcheck.probe("127.0.0.1", port, "/health", 0.5).detail == "HTTP 503 (draining)"
    backend.answer = (200, 0.8)
    result = lbi_healthcheck.probe("127.0.0.1", port, "/health", 0.3)
    assert not result.ok and result.detail == "timed out after 0.3 s" and result.seconds < 0.45


def test_probe_of_a_process_that_accepts_nothing_ends_on_time():
    # Listening but never accepting: what a stopped (SIGSTOP) gunicorn looks like from outside.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        result = lbi_healthcheck.probe("127.0.0.1", sock.getsockname()[1], "/health", 0.3)
    assert not result.ok and "timed out" in result.detail and result.seconds < 0.45


def test_probe_of_a_closed_port_fails_at_once():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = lbi_healthcheck.probe("127.0.0.1", port, "/health", 0.5)
    assert not result.ok and "refused" in result.detail.lower() and result.seconds < 0.1


def test_run_probes_on_a_fixed_schedule_and_stops_when_asked(tree, backend):
    port = backend.server_address[1]
    tree.write_state([server("web1", address="127.0.0.1", port=port)])
    checker = lbi_healthcheck.Checker(config(tree, interval=0.2, timeout=0.1, textfile=""), log=lambda line: None)
    stop = threading.Event()
    runner = threading.Thread(target=checker.run, args=(stop,))
    runner.start()
    time.sleep(1.1)
    stop.set()
    runner.join(2)
    assert not runner.is_alive()
    assert 5 <= checker.backends["web1"].passes <= 7
