"""The gunicorn entry point ``lbapp.wsgi:app``."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from flask import Flask

from helpers import clean_env

BAD_SETTINGS = [
    ("LBAPP_DISPLAY_NAME", ""),
    ("LBAPP_VERSION", "not a version"),
    ("LBAPP_DRAIN_FILE", "relative"),
    ("LBAPP_PROXY_HOPS", "99"),
    ("LBAPP_LOG_LEVEL", "CHATTY"),
    ("LBAPP_STARTED_AT", "last tuesday"),
    ("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/lbapp/metrics"),
]


def _import_wsgi(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "import lbapp.wsgi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS, ids=[v for v, _ in BAD_SETTINGS])
def test_bad_config_exits_cleanly(tmp_path, variable, value):
    env = clean_env(tmp_path, **{variable: value})
    result = _import_wsgi(env)
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1
    assert errors[0].startswith(f"lbapp: configuration error: {variable}")
    assert value in errors[0]


def test_good_config_imports(tmp_path):
    result = _import_wsgi(clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "lbapp ready" in result.stdout


def _fresh_wsgi():
    sys.modules.pop("lbapp.wsgi", None)
    return importlib.import_module("lbapp.wsgi")


def test_wsgi_app_in_process(monkeypatch, tmp_path):
    for name, value in clean_env(tmp_path, LBAPP_DISPLAY_NAME="wsgi-test").items():
        if name.startswith("LBAPP_"):
            monkeypatch.setenv(name, value)
    module = _fresh_wsgi()
    assert isinstance(module.app, Flask)
    assert module.app.test_client().get("/health").get_json()["display_name"] == "wsgi-test"


def test_wsgi_config_error_in_process(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LBAPP_LOG_LEVEL", "NOPE")
    with pytest.raises(SystemExit) as info:
        _fresh_wsgi()
    assert info.value.code == 4
    err = capsys.readouterr().err
    assert (
        err == "lbapp: configuration error: LBAPP_LOG_LEVEL='NOPE': must be one of "
        "DEBUG, INFO, WARNING, ERROR\n"
    )
    sys.modules.pop("lbapp.wsgi", None)
