"""The lbi_wheelhouse module's preview: check mode never builds on the controller."""

from __future__ import annotations

import importlib.util
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from conftest import PROJECT

_spec = importlib.util.spec_from_file_location("lbi_wheelhouse", PROJECT / "roles/backend/library/lbi_wheelhouse.py")
lbi_wheelhouse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lbi_wheelhouse)


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
    with patch_module_args(args), pytest.raises(SystemExit):
        lbi_wheelhouse.main()
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] and result["release_id"] and result["archive"].startswith(str(dest))
    assert not dest.exists(), "check mode wrote on the controller"
