"""Every service of the tier runs sandboxed by systemd, and NGINX's rendered configuration
passes a static analyzer (gixy) with no finding."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import BACKEND_GROUP, LB_GROUP, MONITORING_GROUP, group_hosts

# Below 5.0 is what systemd-analyze rates "OK" or better.
EXPOSURE_BELOW = 5.0
EVERY_HOST = ["prometheus-node-exporter.service", "rsyslog.service"]
UNITS = {
    BACKEND_GROUP: ["lbapp.service", *EVERY_HOST],
    LB_GROUP: [
        "nginx.service",
        "lbi-healthcheck.service",
        "prometheus-nginx-exporter.service",
        "keepalived.service",
        *EVERY_HOST,
    ],
    MONITORING_GROUP: EVERY_HOST,
}
GIXY = Path(sys.executable).with_name("gixy")


def exposure(host, unit: str) -> tuple[float, str]:
    out = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -n 1")
    match = re.search(r"exposure level for \S+: ([0-9.]+) (\w+)", out)
    assert match, out
    return float(match.group(1)), match.group(2)


def test_every_service_is_sandboxed_and_running(inventory):
    runner = AnsibleRunner(inventory)
    scores = {}
    for group, units in UNITS.items():
        for name, host in group_hosts(inventory, group).items():
            for unit in units:
                if unit == "keepalived.service" and not runner.get_variables(name).get("keepalived_vip_addresses"):
                    continue
                assert host.service(unit).is_running, f"{unit} is not running on {name}"
                scores[f"{name} {unit}"] = exposure(host, unit)
    for where, (score, level) in sorted(scores.items()):
        print(f"{where}: exposure {score} {level}")
    assert {where: s for where, s in scores.items() if s[0] >= EXPOSURE_BELOW} == {}


def test_nginx_configuration_has_no_gixy_finding(loadbalancers, role_var):
    for name, host in loadbalancers.items():
        dump = host.check_output("nginx -T 2>/dev/null")
        run = subprocess.run([GIXY, "-f", "json", "-"], input=dump, capture_output=True, text=True, check=False)
        findings = json.loads(run.stdout or "[]")
        print(f"{name}: gixy {len(findings)} findings over {len(dump.splitlines())} lines of nginx -T")
        # An inventory may turn HSTS off (lb_hsts_max_age 0); gixy's finding then says what was chosen.
        if not int(role_var(name, "lb_hsts_max_age")):
            findings = [f for f in findings if f["plugin"] != "hsts_header"]
        assert [(f["plugin"], f["reason"]) for f in findings] == [], name
        assert run.returncode == 0, run.stderr
