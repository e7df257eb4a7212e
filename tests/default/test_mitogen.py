"""The opt-in mitogen strategy (`make ... MITOGEN=1`, README "Faster runs (mitogen)"):
site.yml under it, over SSH with become, finds the converged tier as it is and changes nothing."""

from __future__ import annotations

import time
from pathlib import Path

import ansible_mitogen

from helpers import hosts_not_clean, recap, run_playbook

STRATEGY_DIR = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"


def test_site_under_mitogen_changes_nothing_on_the_converged_tier(inventory):
    start = time.monotonic()
    result = run_playbook(
        inventory,
        "site.yml",
        {},
        env={"ANSIBLE_STRATEGY": "mitogen_linear", "ANSIBLE_STRATEGY_PLUGINS": str(STRATEGY_DIR)},
        timeout=900,
    )
    took = time.monotonic() - start
    output = result.stdout + result.stderr
    # An unknown strategy fails the run, so rc 0 means mitogen ran it.
    assert result.returncode == 0, output[-3000:]
    print(f"site.yml under mitogen_linear: {took:.1f} s, {recap(output)}")
    assert hosts_not_clean(output) == [], output[-3000:]
