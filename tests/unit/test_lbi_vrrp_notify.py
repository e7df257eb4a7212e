"""keepalived's notify hook (roles/keepalived/templates/lbi-notify.j2): the metric it writes
says a host holds the floating address only while the address is on its interface."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from conftest import PROJECT
from jinja2 import Environment

VIP = "10.199.6.200"


@pytest.fixture
def hook(tmp_path):
    """The rendered hook, with `ip` and `logger` replaced by fakes that read and log to tmp_path."""
    env = Environment(keep_trailing_newline=True)
    env.filters["split"] = lambda value, sep: value.split(sep)
    text = (PROJECT / "roles/keepalived/templates/lbi-notify.j2").read_text()
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    script = tmp_path / "lbi-notify"
    script.write_text(
        env.from_string(text).render(
            ansible_managed="test",
            keepalived_textfile_dir=str(textfile),
            keepalived_vip_addresses=[f"{VIP}/24"],
            keepalived_interface="eth0",
        )
    )
    fakes = tmp_path / "bin"
    fakes.mkdir()
    # The fake `ip` answers "held" when tmp_path/held exists, as `ip -o addr show ... to` does.
    (fakes / "ip").write_text(
        f'#!/bin/bash\n[[ "$*" == "-o addr show dev eth0 to {VIP}/32" ]] || exit 2\n'
        f'[[ -e {tmp_path}/held ]] && echo "2: eth0    inet {VIP}/24 scope global secondary eth0"\nexit 0\n'
    )
    (fakes / "logger").write_text(f'#!/bin/bash\necho "$*" >> {tmp_path}/log\n')
    for fake in fakes.iterdir():
        fake.chmod(0o755)

    def run(state: str, held: bool) -> tuple[str, str]:
        (tmp_path / "held").unlink(missing_ok=True)
        if held:
            (tmp_path / "held").touch()
        (tmp_path / "log").unlink(missing_ok=True)
        environ = {**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}"}
        subprocess.run(["bash", str(script), "INSTANCE", "lbi_51", state, "200"], env=environ, check=True)
        metric = (textfile / "lbi_vrrp.prom").read_text()
        return metric, (tmp_path / "log").read_text()

    return run


def master(metric: str) -> int:
    return int(re.search(r'^lbi_vrrp_master\{vrrp_instance="lbi_51"\} (\d)$', metric, re.M).group(1))


def test_a_master_that_holds_the_address_reports_it(hook):
    metric, log = hook("MASTER", held=True)
    assert master(metric) == 1
    assert 'lbi_vrrp_state_info{vrrp_instance="lbi_51",state="MASTER"} 1' in metric
    assert "is now MASTER" in log and "not on eth0" not in log


def test_a_master_without_the_address_reports_none_and_says_why(hook):
    metric, log = hook("MASTER", held=False)
    assert master(metric) == 0
    assert "is MASTER but its addresses are not on eth0" in log


@pytest.mark.parametrize("state", ["BACKUP", "FAULT", "STOP"])
def test_other_states_never_report_the_address(hook, state):
    metric, _ = hook(state, held=True)
    assert master(metric) == 0
    assert f'state="{state}"' in metric
