"""Bad input fails the run naming its one broken rule, and the running tier keeps serving.

Cases the roles' own checks catch run with --tags preflight (validation only); those only
NGINX or Prometheus can judge run the one concern they touch (--tags lb, --tags monitoring).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import PROJECT_DIR, hosts_not_clean, http, recap, run_playbook

LIVE_FILES = (
    "/etc/nginx/nginx.conf /etc/nginx/conf.d/lbi-upstreams.conf /etc/nginx/conf.d/lbi-site.conf "
    "/etc/nginx/lbi/servers.conf /etc/load-balancer-infra/healthcheck.json "
    "/etc/nginx/tls/lbi.crt /etc/nginx/tls/lbi.key"
)
PREFLIGHT = ("--tags", "preflight")
# "<role> role on <host>: <rule>" or "rolling_update on <host>: <rule>", as JSON strings.
RULE = re.compile(r'"(?:[a-z_]+ role|rolling_update) on [^:"]+: ((?:[^"\\]|\\.)*)"')


def case(limit, extra=None, rule=None, *, hosts=None, text=None, foreign=False, tags=PREFLIGHT, playbook="site.yml"):
    """`rule`: the one message after "<role> on <host>: " (every failure must be that one);
    `text`: a substring of that one rule, or with `foreign` of what Ansible or NGINX say
    themselves (then no rule of the roles may fire). `{web1}`, `{web2}`... stand
    for the backends' names in order, `{addr1}` for the first one's address."""
    return pytest.param(
        {
            "limit": limit,
            "extra": extra or {},
            "hosts": hosts,
            "rule": rule,
            "text": text,
            "foreign": foreign,
            "tags": tags,
            "playbook": playbook,
        },
        id=json.dumps(extra or hosts),
    )


CASES = [
    case("loadbalancers", {"lb_algorithm": "fastest"}, text="value of lb_algorithm must be one of", foreign=True),
    case(
        "loadbalancers",
        {"lb_tls_protocols": ["TLSv1.1"]},
        text="value of lb_tls_protocols must be one or more of",
        foreign=True,
    ),
    case("loadbalancers", {"lb_listen_port": 70000}, "lb_listen_port=70000 must be a whole number from 1 to 65535"),
    case(
        "loadbalancers",
        {"lb_tls_port": 70000, "lb_tls_public_port": 443},
        "lb_tls_port=70000 must be a whole number from 1 to 65535",
    ),
    case("loadbalancers", {"lb_rate_limit_rate": 0}, "lb_rate_limit_rate=0 must be a whole number >= 1"),
    case(
        "loadbalancers",
        {"lb_upstream_name": "9bad"},
        "lb_upstream_name=9bad must be letters, digits and _ (not starting with a digit)",
    ),
    case("loadbalancers", {"lb_access_log": None}, "lb_access_log= must be an absolute path or off"),
    case(
        "loadbalancers",
        {"lb_client_max_body_size": "lots"},
        "lb_client_max_body_size=lots must be an NGINX size such as 1m",
    ),
    case(
        "loadbalancers",
        {"lb_access_log_buffer": "lots"},
        "lb_access_log_buffer=lots must be null or an NGINX size such as 64k",
    ),
    case(
        "loadbalancers",
        {"lb_stub_status_port": 80},
        "lb_stub_status_port=80 must not be lb_listen_port or lb_tls_port (it serves loopback only)",
    ),
    case("loadbalancers", {"keepalived_router_id": 300}, "keepalived_router_id=300 must be 1-255"),
    case(
        "loadbalancers",
        {"keepalived_vip_addresses": ["vip.example.net"]},
        text="keepalived_vip_addresses=['vip.example.net'] must be IPv4 addresses",
    ),
    case(
        "loadbalancers",
        {"keepalived_priority": 150},
        "keepalived_priority=150 must differ from every other host's in loadbalancers",
    ),
    # A retry budget shorter than a read timeout: a timed-out request would never move on.
    case(
        "loadbalancers",
        {"lb_proxy_next_upstream_timeout": 3},
        text="lb_proxy_next_upstream_timeout=3 must be 0 (no limit) or",
    ),
    case(
        "loadbalancers",
        {"lb_health_check_timeout": 1},
        "lb_health_check_timeout=1 must be above 0 and below lb_health_check_interval=1",
    ),
    case(
        "loadbalancers",
        {"lb_tls_private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
        "lb_tls_certificate and lb_tls_private_key must be given together (certificate missing, key given), "
        "or neither for a self-signed one",
    ),
    case(
        "loadbalancers",
        {"lb_backend_group": "lbi_empty"},
        hosts={"lbi_empty": {}},
        rule="lb_backend_group=lbi_empty must name an inventory group with at least one host",
    ),
    # Per-backend settings: as extra vars (every backend) and as one backend's host var.
    case("loadbalancers", {"lb_weight": -1}, text="lb_weight=-1 of backend"),
    case("loadbalancers", {"lb_backup": "false"}, text="lb_backup=false of backend"),
    case(
        "loadbalancers",
        hosts={"backends": {"hosts": {"{web2}": {"lb_weight": 0}}}},
        rule="lb_weight=0 of backend {web2} must be a whole number >= 1",
    ),
    case(
        "loadbalancers",
        hosts={"backends": {"hosts": {"{web2}": {"backend_listen_address": "{addr1}"}}}},
        text="backends must not share an address and port (backend_listen_address, backend_port)",
    ),
    case(
        "loadbalancers",
        {"lb_algorithm": "ip_hash"},
        "lb_backup is true on {web1} but lb_algorithm=ip_hash; "
        "NGINX allows backup servers only with round_robin and least_conn",
        hosts={"backends": {"hosts": {"{web1}": {"lb_backup": True}}}},
    ),
    case(
        "loadbalancers",
        {"lb_algorithm": "sticky"},
        "lb_backup is true on {web1} but lb_algorithm=sticky; "
        "NGINX allows backup servers only with round_robin and least_conn",
        hosts={"backends": {"hosts": {"{web1}": {"lb_backup": True}}}},
    ),
    case("loadbalancers", {"lb_drain": True}, text="has lb_drain=true or lb_backup=true; at least one must be"),
    # Neither all drained nor all backup, and still no primary left.
    case(
        "loadbalancers",
        hosts={
            "backends": {
                "hosts": {"{web1}": {"lb_drain": True}, "{web2}": {"lb_backup": True}, "{web3}": {"lb_backup": True}}
            }
        },
        text="has lb_drain=true or lb_backup=true; at least one must be",
    ),
    # Passes every check of the role but not NGINX's own: caught by nginx -t on the staged copy.
    case(
        "loadbalancers",
        {"lb_algorithm": "hash", "lb_hash_key": "$no_such_variable"},
        text='unknown "no_such_variable" variable',
        foreign=True,
        tags=("--tags", "lb"),
    ),
    case("backends", {"backend_port": 70000}, "backend_port=70000 must be a port from 1 to 65535"),
    case("backends", {"backend_port": 0}, "backend_port=0 must be a port from 1 to 65535"),
    case(
        "backends",
        {"backend_worker_class": "eventlet"},
        text="value of backend_worker_class must be one of",
        foreign=True,
    ),
    case(
        "backends",
        {"backend_release": "1.0 beta"},
        "backend_release=1.0 beta must be null or 1 to 64 characters of A-Z a-z 0-9 . _ + -",
    ),
    case(
        "backends",
        {"backend_wsgi_app": "lbapp.wsgi"},
        "backend_wsgi_app=lbapp.wsgi must be a WSGI callable as module:attr, such as lbapp.wsgi:app",
    ),
    case(
        "backends",
        {"backend_app_src": "/nonexistent/app", "backend_app_lock": "{project}/app/requirements.lock"},
        "backend_app_src=/nonexistent/app must be a Python project directory on the controller"
        " (no pyproject.toml there)",
    ),
    # Pinned exactly, but without hashes.
    case(
        "backends",
        {"backend_app_lock": "{project}/app/requirements-dev.txt"},
        "backend_app_lock={project}/app/requirements-dev.txt must be a lock file on the controller"
        " with a --hash=sha256 for every pin",
    ),
    case("loadbalancers", {"node_exporter_port": 0}, "node_exporter_port=0 must be a port number (1-65535)"),
    case("loadbalancers", {"nginx_exporter_scrape_uri": "stub_status"}, text="nginx_exporter_scrape_uri=stub_status"),
    case(
        "loadbalancers",
        {"logging_files_by_group": {"loadbalancers": [{"path": "relative.log", "tag": "x"}]}},
        text="logging_files_by_group=",
    ),
    case("monitoring", {"logging_port": 0}, "logging_port=0 must be a port number (1-65535)"),
    case("monitoring", {"logging_rotate_count": 0}, "logging_rotate_count=0 must be >= 1"),
    # The scenario's containers refuse user namespaces: the unit would fail to start.
    case("backends", {"backend_private_users": True}, text="backend_private_users=true needs user namespaces"),
    case("monitoring", {"monitoring_port": 70000}, "monitoring_port=70000 must be a port number (1-65535)"),
    case("monitoring", {"monitoring_alert_error_ratio": 5}, text="monitoring_alert_error_ratio=5"),
    case("monitoring", {"monitoring_scrape_interval": "often"}, text="monitoring_scrape_interval=often"),
    case(
        "backends",
        {"rolling_update_serial": 0},
        "rolling_update_serial=0 must be a number >= 1 or a percentage such as 25%",
        tags=(),
        playbook="rolling_update.yml",
    ),
]


def fill(value, names: dict):
    """Replace the {web1}/{web2}/{addr1}/{project} placeholders in keys and values."""
    if isinstance(value, dict):
        return {fill(k, names): fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, names) for v in value]
    if isinstance(value, str):
        for placeholder, real in names.items():
            value = value.replace(placeholder, real)
    return value


def rejected(inventory, lb, lb_http_url, backends, playbook, extra, limit, args, hosts=None):
    """Run a playbook that must fail; check that the live NGINX files stayed and the tier serves."""
    before = lb.check_output(f"sha256sum {LIVE_FILES}")
    result = run_playbook(
        inventory, playbook, extra, ("--limit", limit, *args), hosts, env={"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert lb.check_output(f"sha256sum {LIVE_FILES}") == before, "live NGINX files changed"
    answers = http(lb, f"{lb_http_url}/health", count=len(backends))
    assert [a["status"] for a in answers] == [200] * len(backends)
    return output


@pytest.mark.parametrize("bad", CASES)
@pytest.mark.destructive
def test_bad_input_is_rejected_naming_its_rule_and_the_tier_keeps_serving(
    inventory, lb, lb_http_url, backends, backend_addresses, bad
):
    if not AnsibleRunner(inventory).get_hosts(bad["limit"]):
        pytest.skip(f"no host in group {bad['limit']}")
    ordered = sorted(backends)
    names = {f"{{web{n}}}": name for n, name in enumerate(ordered, start=1)} | {
        "{addr1}": backend_addresses[ordered[0]],
        "{project}": str(PROJECT_DIR),
    }
    bad = fill(bad, names)
    output = rejected(
        inventory, lb, lb_http_url, backends, bad["playbook"], bad["extra"], bad["limit"], bad["tags"], bad["hosts"]
    )
    broken = {json.loads(f'"{message}"') for message in RULE.findall(output)}
    print(f"rules broken: {sorted(broken)}")
    if bad["rule"]:
        assert broken == {bad["rule"]}, output[-3000:]
    elif bad["foreign"]:
        assert bad["text"] in output, output[-3000:]
        assert not broken, broken
    else:
        # Every backend may break the same rule: still one rule.
        [rule] = {re.sub(r" of backend \S+", " of backend *", message) for message in broken}
        assert bad["text"] in rule, broken


@pytest.mark.destructive
def test_a_certificate_that_does_not_match_its_key_never_reaches_the_live_files(inventory, lb, lb_http_url, backends):
    """nginx -t on the staged tree catches the mismatched pair; the live certificate stays."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("a", "b"):
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-subj", f"/CN={name}.example", "-days", "1",
                 "-keyout", f"{tmp}/{name}.key", "-out", f"{tmp}/{name}.crt"],
                check=True, capture_output=True,
            )  # fmt: skip
        extra = {
            "lb_tls_certificate": Path(tmp, "a.crt").read_text(),
            "lb_tls_private_key": Path(tmp, "b.key").read_text(),
        }
        key = Path(tmp, "b.key").read_text()
    output = rejected(
        inventory, lb, lb_http_url, backends, "site.yml", extra, "loadbalancers", ("--tags", "lb", "--diff", "-v")
    )
    assert "nginx -t rejected the new configuration" in output, output[-3000:]
    assert "key values mismatch" in output, output[-3000:]
    body = [line for line in key.splitlines() if line and not line.startswith("-----")]
    assert not [line for line in body if line in output], "the private key was logged"


@pytest.mark.destructive
def test_a_configuration_promtool_rejects_leaves_prometheus_as_it_was(inventory):
    """Passes the role's own checks, but not Prometheus's: caught before the live file changes."""
    names = AnsibleRunner(inventory).get_hosts("monitoring")
    if not names:
        pytest.skip("no host in group monitoring")
    mon = testinfra.get_host(f"ansible://{names[0]}", ansible_inventory=inventory)
    live = "/etc/prometheus/prometheus.yml /etc/prometheus/rules.d/lbi-alerts.yml /etc/default/prometheus"
    before = mon.check_output(f"sha256sum {live}")
    pid = mon.check_output("systemctl show -p MainPID --value prometheus.service")
    # A scrape timeout longer than the interval is valid syntax but an invalid configuration.
    result = run_playbook(
        inventory, "site.yml", {"monitoring_scrape_timeout": "5m"}, ("--limit", "monitoring", "--tags", "monitoring")
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "scrape timeout greater than scrape interval" in output, output[-3000:]
    assert mon.check_output(f"sha256sum {live}") == before, "live Prometheus configuration changed"
    assert mon.check_output("systemctl show -p MainPID --value prometheus.service") == pid
    assert mon.service("prometheus").is_running


def test_preflight_alone_passes_on_good_input_and_changes_nothing(inventory):
    """--tags preflight runs every role's checks and nothing else."""
    result = run_playbook(inventory, "site.yml", {}, ("--tags", "preflight"))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert hosts_not_clean(output) == [], recap(output)
    tasks = set(re.findall(r"^TASK \[(\w+) : ([^\]]+)\]", output, re.MULTILINE))
    print(f"preflight tasks run: {sorted(tasks)}")
    roles = {"lb", "lb_health_check", "backend", "monitoring", "logging", "node_exporter"}
    assert {role for role, _name in tasks} >= roles
    assert all(name.startswith(("Check", "Validat", "Build")) for _role, name in tasks), sorted(tasks)
