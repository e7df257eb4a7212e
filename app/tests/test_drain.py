"""Draining: the flag file turns /health into 503 "draining" until it is removed."""

from __future__ import annotations

import os

from lbapp import create_app
from lbapp.drain import DrainState


def test_drain_cycle(client, drain_file):
    assert client.get("/health").status_code == 200

    with open(drain_file, "w"):
        pass
    response = client.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "draining"
    assert set(body) == {"status", "host", "display_name", "version", "uptime_seconds"}
    assert body["display_name"] == "Test Web 1"
    assert client.head("/health").status_code == 503

    os.remove(drain_file)
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["status"] == "healthy"


def test_index_shows_draining_but_still_serves(client, drain_file):
    with open(drain_file, "w"):
        pass
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "status-draining" in html
    assert ">draining</p>" in html


def test_drain_state_caches_for_interval(tmp_path):
    now = [100.0]
    flag = tmp_path / "drain"
    state = DrainState(str(flag), interval=1.0, clock=lambda: now[0])
    assert state.is_draining() is False
    flag.touch()
    now[0] += 0.5
    assert state.is_draining() is False  # still cached
    now[0] += 0.5
    assert state.is_draining() is True  # re-checked after 1 s
    flag.unlink()
    now[0] += 0.9
    assert state.is_draining() is True
    now[0] += 0.1
    assert state.is_draining() is False


def test_drain_state_without_cache_checks_every_time(tmp_path):
    flag = tmp_path / "drain"
    state = DrainState(str(flag), interval=0)
    assert not state.is_draining()
    flag.touch()
    assert state.is_draining()


def test_production_default_caches_for_one_second(base_env):
    # Built straight from the environment: make_app would turn the cache off.
    app = create_app(base_env)
    assert app.extensions["lbapp"].drain.interval == 1.0
