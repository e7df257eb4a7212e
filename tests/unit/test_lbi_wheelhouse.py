"""The lbi_wheelhouse module's preview: check mode never builds on the controller."""

from __future__ import annotations

import pytest
from conftest import PROJECT, load_module, run_module

lbi_wheelhouse = load_module("roles/backend/library/lbi_wheelhouse.py")


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
