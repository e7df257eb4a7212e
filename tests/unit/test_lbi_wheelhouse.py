"""The lbi_wheelhouse module: a preview never builds on the controller; a prebuilt wheel ships as it is."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from conftest import PROJECT, load_module, run_module

lbi_wheelhouse = load_module("plugins/modules/lbi_wheelhouse.py")


def test_check_mode_reports_a_build_and_runs_none(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lbi_wheelhouse, "build", lambda *args: pytest.fail("check mode started a build"))
    dest = tmp_path / "wheelhouse"
    args = {
        "src": str(PROJECT / "app"),
        "lock": str(PROJECT / "app" / "requirements.lock"),
        "dest": str(dest),
        "python_version": "3.11",
        "arch": "x86_64",
        "_ansible_check_mode": True,
    }
    result = run_module(lbi_wheelhouse, capsys, args)
    assert result["changed"] and result["release_id"] and result["archive"].startswith(str(dest))
    assert not dest.exists(), "check mode wrote on the controller"


def fake_wheel(directory, name="hello_app-1.0-py3-none-any.whl", content=b"a wheel"):
    path = directory / name
    path.write_bytes(content)
    return path


def build_args(tmp_path, wheel):
    lock = tmp_path / "requirements.lock"
    if not lock.exists():
        lock.write_text("# no dependencies\n")
    return {
        "wheel": str(wheel),
        "lock": str(lock),
        "dest": str(tmp_path / "wheelhouse"),
        "python_version": "3.11",
        "arch": "x86_64",
    }


def test_a_prebuilt_wheel_is_shipped_as_it_is_and_pinned_by_its_hash(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(lbi_wheelhouse, "run", lambda module, argv, env: calls.append(argv[3]))
    wheel = fake_wheel(tmp_path, "Hello_App-1.0-py3-none-any.whl")
    result = run_module(lbi_wheelhouse, capsys, build_args(tmp_path, wheel))
    assert calls == ["download"], "only the dependencies are fetched; the wheel is not rebuilt"
    assert result["changed"] and result["app_version"] == "1.0"
    install = (tmp_path / "wheelhouse" / Path(result["path"]).name / "install.txt").read_text()
    digest = hashlib.sha256(b"a wheel").hexdigest()
    assert install.endswith(f"Hello_App==1.0 \\\n    --hash=sha256:{digest}\n"), install
    assert wheel.name in result["files"]


def test_another_wheel_is_another_release_and_the_same_one_is_not_rebuilt(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(lbi_wheelhouse, "run", lambda *args: None)
    first = run_module(lbi_wheelhouse, capsys, build_args(tmp_path, fake_wheel(tmp_path)))
    again = run_module(lbi_wheelhouse, capsys, build_args(tmp_path, fake_wheel(tmp_path)))
    assert again["release_id"] == first["release_id"] and not again["changed"]
    other = run_module(lbi_wheelhouse, capsys, build_args(tmp_path, fake_wheel(tmp_path, content=b"rebuilt")))
    assert other["release_id"] != first["release_id"] and other["changed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"src": "/nowhere"}, "parameters are mutually exclusive: src|wheel"),
        ({"wheel": None}, "one of the following is required: src, wheel"),
        ({"wheel": "/nowhere/app.tar.gz"}, "wheel=/nowhere/app.tar.gz must be an existing .whl file"),
    ],
    ids=["both", "neither", "not-a-wheel"],
)
def test_the_app_comes_from_exactly_one_source_tree_or_wheel(tmp_path, capsys, args, message):
    merged = {key: value for key, value in (build_args(tmp_path, fake_wheel(tmp_path)) | args).items() if value}
    with patch_module_args(merged), pytest.raises(SystemExit):
        lbi_wheelhouse.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and message in result["msg"], result
