#!/usr/bin/env python3
"""The benchmark suite behind `make bench`: serving speed, scaling, provisioning time, failures.

Builds its own lab (bench/inventory/hosts.yml: containers lbi-bench-*, network lbi-bench)
with the project's playbooks and roles, measures, writes bench/results/<date>.md and
bench/results/latest.md, and removes its lab again.
Every figure is the median of interleaved rounds; comparisons are ratios within one run.

    python bench/bench.py            # what `make bench` runs (inside flock /tmp/lbi-docker.lock)
    BENCH_ROUNDS=5 BENCH_SECONDS=8 python bench/bench.py   # longer, steadier
    python bench/bench.py --keep     # leave the bench lab running afterwards
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import lib
import report
from lib import log, median

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "2"))
BACKEND_CPUS = float(os.environ.get("BENCH_BACKEND_CPUS", "0.25"))
TIER_BACKENDS = ["web1", "web2", "web3"]
LIMITED = ["web1", "web2", "web3", "web4", "web5", "web7"]
ADDR = {
    "lb1": "10.199.7.10",
    "web1": "10.199.7.11",
    "web4": "10.199.7.14",
    "web5": "10.199.7.15",
    "web7": "10.199.7.17",
    "lbka0": "10.199.7.30",
    "lblogbuf": "10.199.7.32",
    "lbtls": "10.199.7.33",
    "lbn1": "10.199.7.34",
    "lbn2": "10.199.7.35",
    "lbn4": "10.199.7.36",
    "lbgt": "10.199.7.37",
    "lbgtka0": "10.199.7.38",
}
# Provisioning repetitions, kept small: provisioning dominates the bench's wall time
# (bench/README.md has the measured figures).
PROV_ROUNDS = int(os.environ.get("BENCH_PROV_ROUNDS", "2"))
TEMPLATE_VALUE = 999  # lb_keepalive_requests: one line of lb1's upstream file, then a reload
SETTINGS_ROUNDS = 2
TOP_TASKS = 12  # slowest tasks kept per profiled run
SCALE_HOSTS = {8: [f"sc{i:02d}" for i in range(1, 5)], 16: [f"sc{i:02d}" for i in range(1, 13)]}
HUNG_SECONDS = 10  # the zero-downtime suite hangs a backend for 30 s; here the row, not the soak
ROLLED_RELEASE = "2.0.0"  # what the rolling update of the failure figures leaves on web1
PAIR = ("lbp1", "lbp2")  # bench_pair in bench/inventory/hosts.yml, and its floating address
PAIR_ADDRESS = "10.199.7.90"
PAIR_RETRY = 0.5
LOADDRIVER = lib.ROOT / "tests" / "zero_downtime" / "loaddriver.py"


def url(host: str, path: str = "/", port: int = 80) -> str:
    return f"http://{ADDR[host]}:{port}{path}"


# --- set-up --------------------------------------------------------------------------------


def check_inotify() -> None:
    """Each systemd container holds a few inotify instances; the kernel default (128 per user)
    runs out at about 15 containers on a machine, and new containers then never finish booting."""
    path = Path("/proc/sys/fs/inotify/max_user_instances")
    if int(path.read_text()) >= 512:
        return
    try:
        path.write_text("1024\n")
        log("raised fs.inotify.max_user_instances to 1024 (systemd containers need it; it only raises a limit)")
    except OSError as exc:
        sys.exit(f"fs.inotify.max_user_instances is below 512 and cannot be raised ({exc}): sysctl -w it to 1024")


def lab_up() -> None:
    log("creating the bench lab (playbooks/lab_up.yml with bench/inventory)")
    # With some 30 containers booting at once, systemd may clean /tmp under the boot check's
    # module payload; the containers are up by then, and a second pass finds them booted.
    for attempt in range(3):
        try:
            lib.playbook("playbooks/lab_up.yml")
            return
        except RuntimeError as exc:
            if attempt == 2:
                raise
            log(f"  lab_up.yml failed ({str(exc).splitlines()[0]}); once more")
            time.sleep(5)


def lab_down() -> None:
    log("removing the bench lab (playbooks/lab_down.yml with bench/inventory)")
    lib.playbook("playbooks/lab_down.yml")


# --- provisioning --------------------------------------------------------------------------


def timing(run: lib.PlaybookRun) -> dict:
    """Where a run spent its time: wall, CPU on the controller and on the hosts, per role, and its
    slowest tasks (the whole task list stays out of the raw results)."""
    split = lib.breakdown(run.profile)
    slowest = sorted(split["tasks"], key=lambda task: task["wall"], reverse=True)[:TOP_TASKS]
    return {
        "seconds": run.seconds,
        "controller_cpu": run.controller_cpu,
        "hosts_cpu": run.hosts_cpu,
        "tasks": len(split["tasks"]),
        "runs": sum(task["runs"] for task in split["tasks"]),
        "roles": split["roles"],
        "slowest": slowest,
    }


def provisioning_lab(results: dict, mitogen: bool) -> None:
    """Cold site.yml on the 4-host lab, then rounds of idempotent re-runs with the default
    settings, and one under mitogen (the opt-in strategy, MITOGEN=1)."""
    log("provisioning: cold site.yml on the 4-host lab")
    cold = lib.playbook("playbooks/site.yml")
    results["cold"] = {"seconds": cold.seconds, "changed": cold.changed}
    results["profiles"] = {"cold, 4 hosts": timing(cold)}
    rows: dict[str, list] = {"idempotent": [], "template": [], "mitogen": [], "changed_idem": [], "changed_mito": []}
    for number in range(PROV_ROUNDS):
        idem = lib.playbook("playbooks/site.yml")
        rows["idempotent"].append(idem.seconds)
        rows["changed_idem"].append(idem.changed)
        if number == 0:
            results["profiles"]["idempotent, 4 hosts"] = timing(idem)
        if mitogen and number == 0:  # once: the opt-in strategy
            mito = lib.playbook("playbooks/site.yml", mitogen=True)
            rows["mitogen"].append(mito.seconds)
            rows["changed_mito"].append(mito.changed)
    results["rounds"] = rows


def release_inventory() -> Path:
    """The release the rolling update left on web1, recorded in inventory as an operator would."""
    return lib.write_inventory("release", hostvars={"web1": {"backend_release": ROLLED_RELEASE}})


def provisioning_template(results: dict) -> None:
    """The 4-host lab once more, with one template changed: another lb_keepalive_requests is one
    line of lb1's upstream file, tested and reloaded. Runs after the serving and failure figures, so
    those see the default; the first scale run puts the default back."""
    run = lib.playbook(
        "playbooks/site.yml", (release_inventory(),), extra_vars={"lb_keepalive_requests": TEMPLATE_VALUE}
    )
    results["rounds"]["template"].append(run.seconds)
    results["profiles"]["one template changed, 4 hosts"] = timing(run)
    results["rounds"]["changed_template"] = run.changed


def ansible_settings(results: dict) -> None:
    """Per-setting costs on ad-hoc runs over 8 hosts (the tier and four spare backends), interleaved."""
    pattern = "backends:loadbalancers:" + ":".join(SCALE_HOSTS[8])
    cases = {
        "pipelining on (default)": ("ansible.builtin.command", "true", 20, {}),
        "pipelining off": ("ansible.builtin.command", "true", 20, {"ANSIBLE_PIPELINING": "False"}),
        "forks 5 (default here: 20)": ("ansible.builtin.command", "true", 5, {}),
        "facts: all (what site.yml gathers)": ("ansible.builtin.setup", "", 20, {}),
        "facts: min,network,hardware only": ("ansible.builtin.setup", "gather_subset=!all,network,hardware", 20, {}),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(SETTINGS_ROUNDS):
        for name, (module, args, forks, env) in cases.items():
            times[name].append(lib.adhoc(pattern, module, args, forks, env))
    results["settings"] = {"hosts": 8, "times": times}
    log(f"  settings: { {k: round(median(v), 1) for k, v in times.items()} }")


def provisioning_scale(results: dict, mitogen: bool) -> None:
    """The tier grown to 8 and 16 hosts (1 LB + 7 / 15 backends). The spare backends were set up by
    prepare.yml, so the step that adds them changes only the load balancer (run with --limit, under
    mitogen when it installed); then one idempotent run of all hosts with the default settings."""
    rounds = results["rounds"]
    scale: dict = {4: {"idempotent": rounds["idempotent"]}}
    release = release_inventory()
    for size, extra_hosts in SCALE_HOSTS.items():
        inv = lib.write_inventory(f"scale{size}", groups={"backends": extra_hosts})
        log(f"provisioning: scale to {size} hosts")
        out = lib.playbook("playbooks/site.yml", (inv, release), args=("--limit", "loadbalancers"), mitogen=mitogen)
        idem = lib.playbook("playbooks/site.yml", (inv, release))
        results["profiles"][f"idempotent, {size} hosts"] = timing(idem)
        scale[size] = {
            "scale_out": out.seconds,
            "scale_out_mitogen": mitogen,
            "idempotent": [idem.seconds],
            "changed": idem.changed,
        }
        if mitogen:  # the opt-in strategy (MITOGEN=1) at the same size
            mito_idem = lib.playbook("playbooks/site.yml", (inv, release), mitogen=True)
            scale[size]["mitogen"] = [mito_idem.seconds]
            scale[size]["changed_mitogen"] = mito_idem.changed
    results["scale"] = scale


# --- serving -------------------------------------------------------------------------------


def serving(results: dict) -> None:
    """Unlimited CPU first (the seed against the tier as each is deployed, and the LB overhead at one
    connection), then every backend at BACKEND_CPUS: seed and tier again, tuning knobs, scaling."""
    unlimited = {
        "seed /": lambda: lib.wrk(url("lb1", "/", 8090), SECONDS),
        "tier /": lambda: lib.wrk(url("lb1"), SECONDS),
        "seed /health": lambda: lib.wrk(url("lb1", "/health", 8090), SECONDS),
        "tier /health": lambda: lib.wrk(url("lb1", "/health"), SECONDS),
        # LB overhead: one connection, LB (only web1 behind lbn1) against web1 directly.
        "1 connection via LB": lambda: lib.wrk(url("lbn1"), SECONDS, connections=1),
        "1 connection direct": lambda: lib.wrk(url("web1", "/", 8000), SECONDS, connections=1),
    }
    limited = {
        "seed / (limited)": lambda: lib.wrk(url("lb1", "/", 8090), SECONDS),
        "tier / (limited)": lambda: lib.wrk(url("lb1"), SECONDS),
        "lb upstream keepalive off": lambda: lib.wrk(url("lbka0"), SECONDS),
        "lb access log buffered 64k": lambda: lib.wrk(url("lblogbuf"), SECONDS),
        "gthread, keepalive on": lambda: lib.wrk(url("lbgt"), SECONDS),
        "gthread, keepalive off": lambda: lib.wrk(url("lbgtka0"), SECONDS),
        "https HTTP/1.1": lambda: lib.h2load(f"https://{ADDR['lbtls']}:443/", SECONDS, http1=True),
        "https HTTP/2": lambda: lib.h2load(f"https://{ADDR['lbtls']}:443/", SECONDS),
        "direct sync x5 (default)": lambda: lib.wrk(url("web4", "/", 8000), SECONDS),
        "direct sync x1": lambda: lib.wrk(url("web5", "/", 8000), SECONDS),
        "direct gthread 2x4": lambda: lib.wrk(url("web7", "/", 8000), SECONDS),
        "scale 1": lambda: lib.wrk(url("lbn1"), SECONDS),
        "scale 2": lambda: lib.wrk(url("lbn2"), SECONDS),
        "scale 4": lambda: lib.wrk(url("lbn4"), SECONDS),
    }
    runs: dict[str, list[dict]] = {name: [] for name in [*unlimited, *limited]}
    for label, cases in (("no CPU limit", unlimited), (f"backends at {BACKEND_CPUS} CPU", limited)):
        lib.set_cpus(LIMITED, BACKEND_CPUS if cases is limited else os.cpu_count() or 2)
        for number in range(ROUNDS):
            log(f"serving, {label}: round {number + 1}/{ROUNDS} ({len(cases)} runs of {SECONDS} s)")
            for name, measure in cases.items():
                runs[name].append(measure())
    lib.set_cpus(LIMITED, os.cpu_count() or 2)
    # The seed is done: stop it, so lb1 runs one NGINX again (the rolling update waits for the
    # old NGINX workers of lb1 to exit, and would wait for the seed's workers too).
    lib.dexec("lb1", "systemctl stop lbi-bench-seed-nginx.service")
    for host in TIER_BACKENDS:
        lib.dexec(host, "systemctl stop lbi-bench-seed.service")
    runs["scale 3"] = runs["tier / (limited)"]
    results["runs"] = runs


# --- failure figures -----------------------------------------------------------------------


def under_load(name: str, action, target: str = "", retry_once_after: float | None = None) -> dict:
    """tests/zero_downtime/loaddriver.py on load1 against `target` (lb1 by default; 4 threads,
    100 req/s) around `action`; with `retry_once_after`, a GET that got no answer is sent once more."""
    base = f"/tmp/lbi-bench-load-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
    driver = "/tmp/lbi-loaddriver.py"
    lib.run(["docker", "cp", str(LOADDRIVER), f"{lib.container(lib.LOADGEN)}:{driver}"], 60)
    lib.dexec(lib.LOADGEN, f"rm -f {base}.*")
    options = ["--url", target or url("lb1"), "--threads", "4", "--rate", "100", "--max-seconds", "400"]
    options += ["--stop-file", f"{base}.stop", "--out", f"{base}.json"]
    options += [] if retry_once_after is None else ["--retry-once-after", str(retry_once_after)]
    lib.run(["docker", "exec", "-d", lib.container(lib.LOADGEN), "python3", driver, *options], 60)
    wait_for(lambda: lib.dexec(lib.LOADGEN, f"test -e {base}.json.ready && echo y", check=False).strip() == "y", 30)
    started = time.monotonic()
    action()
    time.sleep(2)
    lib.dexec(lib.LOADGEN, f"touch {base}.stop")
    wait_for(lambda: lib.dexec(lib.LOADGEN, f"test -e {base}.json && echo y", check=False).strip() == "y", 60)
    summary = json.loads(lib.dexec(lib.LOADGEN, f"cat {base}.json"))
    result = {
        "requests": summary["requests"],
        "failed": summary["failed"],
        "slowest_s": summary["slowest_s"],
        "longest_gap_s": summary["longest_gap_s"],
        "retried": sum(kind["second_tries"] for kind in summary["by_kind"].values()),
        "errors": summary["errors"],
        "seconds": round(time.monotonic() - started, 1),
    }
    log(f"  failures [{name}]: {result}")
    return result


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s")
        time.sleep(0.5)


def failures(results: dict) -> None:
    def kill() -> None:
        time.sleep(2)
        lib.dexec("web1", "systemctl kill --signal=SIGKILL lbapp.service")
        wait_for(lambda: lib.dexec("web1", "systemctl is-active lbapp.service", check=False).strip() == "active", 30)
        time.sleep(7)  # NGINX tries it again after fail_timeout (5 s)

    def rolling() -> None:
        # One backend of three (the whole tier takes minutes): taken out of lb1, updated, put back.
        run = lib.playbook(
            "playbooks/rolling_update.yml", extra_vars={"backend_release": ROLLED_RELEASE}, args=("--limit", "web1")
        )
        results["rolling_update_seconds"] = run.seconds

    def reloads() -> None:
        for _ in range(5):
            lib.dexec("lb1", "systemctl reload nginx.service")
            time.sleep(1)

    def hung() -> None:
        # Accepts connections, answers nothing: only the read timeout and the health checker help.
        time.sleep(2)
        lib.dexec("web2", "systemctl kill --signal=SIGSTOP lbapp.service")
        try:
            time.sleep(HUNG_SECONDS)
        finally:
            lib.dexec("web2", "systemctl kill --signal=SIGCONT lbapp.service")
        time.sleep(4)  # back in rotation after 2 passed checks

    def pair_holder() -> str:
        """The pair host holding the floating address; if none does within 30 s, say why."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for host in PAIR:
                if PAIR_ADDRESS in lib.dexec(host, "hostname -I", check=False).split():
                    return host
            time.sleep(1)
        why = {h: lib.dexec(h, "hostname -I; journalctl -u keepalived -n 15 --no-pager", check=False) for h in PAIR}
        raise RuntimeError(f"no host of {PAIR} holds {PAIR_ADDRESS}: {why}")

    def lb_lost() -> None:
        # The holder's container stopped (a lost host), then started: the address moves once.
        holder = pair_holder()
        time.sleep(2)
        lib.run(["docker", "stop", "-t", "10", lib.container(holder)], 60)
        time.sleep(5)
        lib.run(["docker", "start", lib.container(holder)], 60)
        active = "systemctl is-active keepalived.service nginx.service >/dev/null && echo y"
        wait_for(lambda: lib.dexec(holder, active, check=False).strip() == "y", 90)
        time.sleep(3)

    results["cases"] = {
        "kill -9 of a backend's gunicorn": under_load("kill", kill),
        "rolling update of web1 (1 of 3 backends)": under_load("rolling", rolling),
        "5 NGINX reloads": under_load("reload", reloads),
        f"web2 hung for {HUNG_SECONDS} s (SIGSTOP)": under_load("hung", hung),
    }
    pair_holder()  # before the load, which would only time out
    name = f"LB pair: the address holder's container stopped, then started (GETs retried once after {PAIR_RETRY} s)"
    results["cases"][name] = under_load("lb-failover", lb_lost, f"http://{PAIR_ADDRESS}/", PAIR_RETRY)


# --- facts about the machine ---------------------------------------------------------------


def machine_and_versions() -> dict:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        platform.processor(),
    )
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    ansible_core = lib.run(["ansible", "--version"], 60).stdout.splitlines()[0]
    versions = {
        "nginx": lib.dexec("lb1", "nginx -v 2>&1").strip().split("/")[-1],
        "gunicorn": lib.dexec("web1", "/opt/lbapp/current/venv/bin/gunicorn --version").strip().split()[-1].strip(")"),
        "flask": lib.dexec("web1", "/opt/lbapp/current/venv/bin/flask --version | sed -n 2p").strip().split()[-1],
        "python (hosts)": lib.dexec("web1", "python3 --version").strip().split()[-1],
        "python (controller)": platform.python_version(),
        "ansible-core": re.sub(r"[^0-9.]", "", ansible_core.split("core")[-1]),
        "docker engine": lib.run(["docker", "version", "--format", "{{.Server.Version}}"], 60).stdout.strip(),
        "wrk": lib.dexec(lib.LOADGEN, "wrk -v 2>&1 | head -1").split()[1],
        "h2load": lib.dexec(lib.LOADGEN, "h2load --version").strip().split("/")[-1],
        "mitogen": importlib.metadata.version("mitogen") if lib.mitogen_strategy_dir() else "not installed",
    }
    ram = round(mem_kb / 1024 / 1024, 1)
    machine = {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram, "os": platform.platform()}
    return {"machine": machine, "versions": versions}


# --- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keep", action="store_true", help="leave the bench lab running at the end")
    args = parser.parse_args(argv)
    lib.WORK.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": ROUNDS,
        "seconds_per_load_run": SECONDS,
        "backend_cpus": BACKEND_CPUS,
    }
    phases: dict[str, float] = {}
    results["phases"] = phases

    def phase(name: str, step, *step_args) -> None:
        began = time.monotonic()
        try:
            step(*step_args)
        finally:
            phases[name] = round(time.monotonic() - began, 1)

    check_inotify()
    mitogen = lib.mitogen_strategy_dir() is not None
    results["mitogen_error"] = "" if mitogen else "mitogen is not installed in .venv (requirements.txt)"
    phase("remove leftovers of an earlier run", lab_down)  # the cold run must be cold
    try:
        phase("create the bench lab", lab_up)
        results["provisioning"] = {}
        phase("provisioning, 4-host lab", provisioning_lab, results["provisioning"], mitogen)
        log("preparing the variants, the seed and the load generator (bench/playbooks/prepare.yml)")
        phase("variants, seed and load generator", lambda: lib.playbook("bench/playbooks/prepare.yml", mitogen=mitogen))
        results.update(machine_and_versions())
        results["serving"] = {}
        phase("serving", serving, results["serving"])
        results["failures"] = {}
        phase("failure figures", failures, results["failures"])
        phase("provisioning, one template changed", provisioning_template, results["provisioning"])
        phase("Ansible settings", ansible_settings, results["provisioning"])
        phase("provisioning, 8 and 16 hosts", provisioning_scale, results["provisioning"], mitogen)
    finally:
        if not args.keep:
            phase("remove the bench lab", lab_down)
    results["total_seconds"] = time.monotonic() - started
    paths = report.write(results)
    log(f"done in {results['total_seconds'] / 60:.1f} min: {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
