"""Unit tests of the project's Python: plugins/ and the health checker (roles/lb_health_check/files).

They run on the controller (`make unit`), with a fake nginx binary and temporary
directories standing in for /etc/nginx; nothing here needs a load balancer.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

PROJECT = Path(__file__).resolve().parents[2]
sys.path[:0] = [
    str(PROJECT / "plugins" / "module_utils"),
    str(PROJECT / "plugins" / "filter"),
    str(PROJECT / "roles" / "lb_health_check" / "files"),
]

import lbi_nginx  # noqa: E402

# The modules import it from their collection (lbi.tier), which these tests do not install.
sys.modules["ansible_collections.lbi.tier.plugins.module_utils.lbi_nginx"] = lbi_nginx


def load_module(relative: str):
    """One of the project's Ansible modules, by its path under the project."""
    path = PROJECT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_module(module, capsys, args: dict) -> dict:
    """Runs the module with args as Ansible would and returns its JSON result."""
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


# Stands in for nginx -t: rejects a staged tree holding the word BROKEN, and records each test.
FAKE_NGINX = """#!/bin/sh
conf="$4"
echo "$conf" >> "$(dirname "$0")/tests.log"
if grep -rq BROKEN "$(dirname "$conf")"; then
  echo "nginx: [emerg] unknown directive \\"BROKEN\\" in $conf" >&2
  exit 1
fi
exit 0
"""


def server(name: str, address: str = "", **overrides) -> dict:
    entry = {
        "name": name,
        "address": address or f"10.0.0.{int(name[-1]) + 10}",
        "port": 8000,
        "weight": 1,
        "max_fails": 1,
        "fail_timeout": 5,
        "backup": False,
        "down": [],
    }
    entry.update(overrides)
    return entry


class Tree:
    """A live NGINX directory, a staging path and a fake nginx, all under tmp_path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.live = root / "nginx"
        self.staging = root / "state" / "staging"
        self.nginx = root / "bin" / "nginx"
        self.nginx.parent.mkdir()
        self.nginx.write_text(FAKE_NGINX)
        self.nginx.chmod(0o755)
        (self.live / "conf.d").mkdir(parents=True)
        (self.live / "nginx.conf").write_text("include conf.d/*.conf;\n")

    def write_state(self, servers: list) -> dict:
        state = lbi_nginx.make_state(servers)
        for rel, content in lbi_nginx.upstream_files(state).items():
            lbi_nginx.write_file(str(self.live / rel), content)
        return state

    def state(self) -> dict:
        return json.loads((self.live / lbi_nginx.SERVERS_JSON).read_text())

    def nginx_tests(self) -> int:
        log = self.nginx.parent / "tests.log"
        return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Tree:
    monkeypatch.setattr(lbi_nginx, "LOCK_PATH", str(tmp_path / "lbi-nginx.lock"))
    return Tree(tmp_path)
