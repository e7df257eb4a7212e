"""The lbi_systemd_dropin module: one drop-in file, written only when it differs."""

from __future__ import annotations

import pytest
from conftest import load_module, run_module

lbi_systemd_dropin = load_module("plugins/modules/lbi_systemd_dropin.py")


def run(capsys, **args) -> dict:
    return run_module(lbi_systemd_dropin, capsys, args)


def test_the_drop_in_and_its_directory_are_made_once(tmp_path, capsys):
    first = run(capsys, unit="nginx.service", content="[Service]\nUMask=0077\n", root=str(tmp_path))
    path = tmp_path / "nginx.service.d" / "lbi-hardening.conf"
    assert first["changed"] and first["path"] == str(path)
    assert path.read_text() == "[Service]\nUMask=0077\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644" and oct(path.parent.stat().st_mode & 0o777) == "0o755"
    again = run(capsys, unit="nginx.service", content="[Service]\nUMask=0077\n", root=str(tmp_path))
    assert not again["changed"]
    path.chmod(0o666)
    assert run(capsys, unit="nginx.service", content="[Service]\nUMask=0077\n", root=str(tmp_path))["changed"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_check_mode_shows_the_change_and_writes_nothing(tmp_path, capsys):
    result = run(capsys, unit="rsyslog.service", content="[Service]\n", root=str(tmp_path), _ansible_check_mode=True)
    assert result["changed"] and result["diff"]["after"] == "[Service]\n"
    assert not (tmp_path / "rsyslog.service.d").exists()


@pytest.mark.parametrize("args,named", [({"unit": "nginx"}, "unit='nginx'"), ({"name": "../x"}, "name='../x'")])
def test_a_bad_unit_or_file_name_is_refused_by_name(tmp_path, capsys, args, named):
    result = run(capsys, **{"unit": "nginx.service", "content": "", "root": str(tmp_path), **args})
    assert result["failed"] and named in result["msg"]
    assert list(tmp_path.iterdir()) == []
