"""`site.yml --check --diff`, the README's preview: the scenario's check step runs it on the
fresh hosts; here it runs on the converged tier, where it must report no change at all."""

from __future__ import annotations

import re

from helpers import run_playbook


def test_preview_of_the_converged_tier_reports_no_change(inventory, lb):
    before = lb.check_output("sha256sum /etc/nginx/conf.d/*.conf /etc/nginx/lbi/servers.json")
    result = run_playbook(inventory, "site.yml", {}, ("--check", "--diff"), timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    recap = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)", output, re.MULTILINE)
    print(f"--check --diff on the converged tier: {[(host, int(ok), int(changed)) for host, ok, changed in recap]}")
    assert recap and [host for host, _ok, changed in recap if changed != "0"] == [], output[-3000:]
    assert lb.check_output("sha256sum /etc/nginx/conf.d/*.conf /etc/nginx/lbi/servers.json") == before
