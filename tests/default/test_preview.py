"""`site.yml --check --diff`, the README's preview: the scenario's check step runs it on the
fresh hosts; here it runs on the converged tier, where it must report no change at all."""

from __future__ import annotations

from helpers import hosts_not_clean, recap, run_playbook


def test_preview_of_the_converged_tier_reports_no_change(inventory, lb):
    before = lb.check_output("sha256sum /etc/nginx/conf.d/*.conf /etc/nginx/lbi/servers.json")
    result = run_playbook(inventory, "site.yml", {}, ("--check", "--diff"), timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    print(f"--check --diff on the converged tier: {recap(output)}")
    assert hosts_not_clean(output) == [], output[-3000:]
    assert lb.check_output("sha256sum /etc/nginx/conf.d/*.conf /etc/nginx/lbi/servers.json") == before
