"""lbapp.gunicorn_hooks, called directly with stand-ins for gunicorn's objects."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from helpers import clean_env
from lbapp import gunicorn_hooks
from lbapp.config import parse_timestamp


class FakeLog:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def info(self, message: str) -> None:
        self.messages.append(message)


def _server():
    return SimpleNamespace(log=FakeLog())


@pytest.fixture(autouse=True)
def _no_lbapp_environment(monkeypatch):
    """on_starting validates os.environ: start every test from a clean, valid one."""
    for name in list(os.environ):
        if name.startswith("LBAPP_"):
            monkeypatch.delenv(name)


def test_on_starting_sets_started_at(monkeypatch):
    monkeypatch.setenv("LBAPP_STARTED_AT", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    server = _server()
    gunicorn_hooks.on_starting(server)
    value = os.environ["LBAPP_STARTED_AT"]
    assert value.endswith("Z")
    parse_timestamp("LBAPP_STARTED_AT", value)  # valid for lbapp.config
    assert any(value in message for message in server.log.messages)


def test_on_starting_creates_multiproc_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LBAPP_STARTED_AT", "placeholder")
    target = tmp_path / "run" / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(target))
    gunicorn_hooks.on_starting(_server())
    assert target.is_dir()


def test_on_starting_removes_stale_db_files(monkeypatch, tmp_path):
    monkeypatch.setenv("LBAPP_STARTED_AT", "placeholder")
    target = tmp_path / "metrics[1]"  # glob metacharacters in the path are escaped
    target.mkdir()
    for name in ("counter_11.db", "histogram_11.db", "gauge_livemax_12.db"):
        (target / name).write_bytes(b"stale")
    (target / "README").write_text("keep me")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(target))
    server = _server()
    gunicorn_hooks.on_starting(server)
    assert sorted(os.listdir(target)) == ["README"]
    assert any("3 stale file(s) removed" in message for message in server.log.messages)


def test_prepare_multiproc_dir_counts(tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"")
    assert gunicorn_hooks.prepare_multiproc_dir(str(tmp_path)) == 1
    assert gunicorn_hooks.prepare_multiproc_dir(str(tmp_path)) == 0


def test_on_starting_without_log_attribute(monkeypatch):
    monkeypatch.setenv("LBAPP_STARTED_AT", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    gunicorn_hooks.on_starting(object())
    assert os.environ["LBAPP_STARTED_AT"] != "placeholder"


def test_child_exit_marks_worker_dead(monkeypatch, tmp_path):
    for name in ("gauge_livemax_4242.db", "counter_4242.db", "gauge_livemax_4243.db"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    gunicorn_hooks.child_exit(_server(), SimpleNamespace(pid=4242))
    # Live gauges of the dead worker go; its counters stay in the totals.
    assert sorted(os.listdir(tmp_path)) == ["counter_4242.db", "gauge_livemax_4243.db"]


def test_child_exit_single_process_mode_does_nothing(monkeypatch, tmp_path):
    (tmp_path / "gauge_livemax_4242.db").write_bytes(b"")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    gunicorn_hooks.child_exit(_server(), SimpleNamespace(pid=4242))
    assert os.listdir(tmp_path) == ["gauge_livemax_4242.db"]


def test_hooks_import_without_gunicorn_or_flask(tmp_path):
    code = (
        "import sys\n"
        "for name in ('gunicorn', 'flask', 'werkzeug'):\n"
        "    sys.modules[name] = None\n"
        "from lbapp.gunicorn_hooks import on_starting, child_exit\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_on_starting_exits_on_bad_config(monkeypatch, capsys):
    monkeypatch.setenv("LBAPP_STARTED_AT", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.setenv("LBAPP_VERSION", "no spaces allowed")
    with pytest.raises(SystemExit) as info:
        gunicorn_hooks.on_starting(_server())
    assert info.value.code == 4
    assert capsys.readouterr().err == (
        "lbapp: configuration error: LBAPP_VERSION='no spaces allowed': "
        "must be 1 to 64 characters of A-Z a-z 0-9 . _ + -\n"
    )


def test_on_starting_exits_when_multiproc_dir_cannot_be_made(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LBAPP_STARTED_AT", "placeholder")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(target))
    with pytest.raises(SystemExit) as info:
        gunicorn_hooks.on_starting(_server())
    assert info.value.code == 4
    err = capsys.readouterr().err
    assert err.startswith(f"lbapp: configuration error: PROMETHEUS_MULTIPROC_DIR='{target}'")
    assert "cannot prepare the directory" in err


def test_prepare_tolerates_files_vanishing(monkeypatch, tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"")

    def vanished(path):
        raise FileNotFoundError(path)

    monkeypatch.setattr(gunicorn_hooks.os, "remove", vanished)
    assert gunicorn_hooks.prepare_multiproc_dir(str(tmp_path)) == 0


def _response(method: str = "GET"):
    from gunicorn.config import Config
    from gunicorn.http import wsgi

    gunicorn_hooks.send_head_with_body()
    request = SimpleNamespace(version=(1, 1), method=method, should_close=lambda: False)
    sock = gunicorn_hooks._Gather()  # records each sendall, as the real socket would receive it
    return wsgi.Response(request, sock, Config()), sock


@pytest.mark.parametrize("headers", [[("Content-Length", "9")], []], ids=["length", "chunked"])
def test_head_and_first_body_write_leave_in_one_send(headers):
    response, sock = _response()
    response.start_response("200 OK", [("Content-Type", "text/plain"), *headers])
    response.write(b"hello")
    assert len(sock.parts) == 1, sock.parts
    head, _, body = sock.parts[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == (b"hello" if headers else b"5\r\nhello\r\n")
    response.write(b"more")
    response.close()
    assert len(sock.parts) == (2 if headers else 3)


def test_a_response_without_body_still_sends_its_head():
    response, sock = _response("HEAD")
    response.start_response("200 OK", [("Content-Length", "5")])
    response.close()
    assert len(sock.parts) == 1 and sock.parts[0].startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_star_import_takes_the_server_hooks_only():
    namespace: dict = {}
    exec("from lbapp.gunicorn_hooks import *", namespace)  # noqa: S102 (what a gunicorn config file does)
    hooks = sorted(name for name in namespace if not name.startswith("__"))
    assert hooks == ["child_exit", "on_starting"]


def test_on_starting_makes_gunicorn_send_the_head_with_the_body(monkeypatch):
    from gunicorn.http import wsgi

    original = wsgi.Response
    while getattr(original, "lbapp_head_with_body", False):
        original = original.__bases__[0]
    monkeypatch.setattr(wsgi, "Response", original)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    gunicorn_hooks.on_starting(_server())
    assert getattr(wsgi.Response, "lbapp_head_with_body", False)


def test_send_head_with_body_patches_once():
    from gunicorn.http import wsgi

    gunicorn_hooks.send_head_with_body()
    patched = wsgi.Response
    gunicorn_hooks.send_head_with_body()
    assert wsgi.Response is patched and patched.lbapp_head_with_body
