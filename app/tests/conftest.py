"""Shared fixtures. Tests never read the caller's real LBAPP_* environment."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

# prometheus_client picks single- or multiprocess mode when it is first imported:
# make sure a stray variable in the caller's shell cannot switch it.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

import pytest  # noqa: E402
from prometheus_client import values  # noqa: E402

from lbapp import create_app  # noqa: E402
from lbapp.config import Config, load_config  # noqa: E402


@pytest.fixture
def base_env(tmp_path) -> dict:
    """A minimal, valid environment: the drain file in a temp dir."""
    return {"LBAPP_DRAIN_FILE": str(tmp_path / "drain")}


@pytest.fixture
def make_config(base_env) -> Callable[..., Config]:
    def _make(env: dict | None = None, **fields) -> Config:
        merged = dict(base_env)
        merged.update(env or {})
        cfg = load_config(merged)
        # Tests see drain-file changes at once (production caches for 1 s).
        fields.setdefault("drain_check_interval", 0.0)
        return dataclasses.replace(cfg, **fields)

    return _make


@pytest.fixture
def make_app(make_config):
    def _make(env: dict | None = None, **fields):
        return create_app(make_config(env, **fields))

    return _make


@pytest.fixture
def app(make_app):
    return make_app({"LBAPP_DISPLAY_NAME": "Test Web 1", "LBAPP_VERSION": "1.2.3-test"})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def drain_file(app):
    return app.extensions["lbapp"].config.drain_file


@pytest.fixture
def multiproc_dir(tmp_path, monkeypatch):
    """Switch prometheus_client to multiprocess mode for one test."""
    directory = tmp_path / "prom"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    return directory


def json_lines(text: str) -> list[dict]:
    """Parse the JSON log lines in captured stdout (other lines are ignored)."""
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


@pytest.fixture
def logs(capsys):
    """Call to get the JSON log records printed so far."""

    def _read() -> list[dict]:
        return json_lines(capsys.readouterr().out)

    return _read
