"""The opt-in mitogen strategy (`make ... MITOGEN=1`, README "Faster runs (mitogen)"):
site.yml under it, over SSH with become, finds the converged tier as it is and changes nothing."""

from __future__ import annotations

import re
import time
from pathlib import Path

import ansible_mitogen

from helpers import run_playbook

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
    recap = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.MULTILINE)
    print(f"site.yml under mitogen_linear: {took:.1f} s, {[(h, int(ok), int(c)) for h, ok, c, _u, _f in recap]}")
    not_clean = [host for host, _ok, *counts in recap if counts != ["0", "0", "0"]]
    assert recap and not_clean == [], output[-3000:]
