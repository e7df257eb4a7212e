"""Helpers of the benchmark suite: commands, containers, Ansible runs, load generators.

Everything the suite creates is named lbi-bench-* on the Docker network lbi-bench; the
hosts are those of bench/inventory/hosts.yml.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = ROOT / ".build" / "bench"  # facts cache, generated inventories (git-ignored)
INVENTORY = BENCH / "inventory" / "hosts.yml"
PREFIX = "lbi-bench-"
LOADGEN = "load1"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str], timeout: float, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command with a hard time limit; output captured as text."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and result.returncode != 0:
        tail = result.stdout[-2000:] + result.stderr[-2000:]
        raise RuntimeError(f"{' '.join(cmd)[:200]}: rc={result.returncode}\n{tail}")
    return result


def container(host: str) -> str:
    return PREFIX + host


def dexec(host: str, script: str, timeout: float = 60, check: bool = True) -> str:
    """Run a shell script inside a bench host's container; returns stdout."""
    return run(["docker", "exec", container(host), "sh", "-c", script], timeout, check).stdout


def set_cpus(hosts: list[str], cpus: float) -> None:
    """A CPU limit per container (cpus >= the machine's cores is no limit)."""
    run(["docker", "update", "--cpus", str(cpus), *[container(h) for h in hosts]], 60)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- Ansible ---------------------------------------------------------------------------------

RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class PlaybookRun:
    seconds: float
    changed: int
    hosts: int
    output: str = field(repr=False)
    # CPU seconds of ansible-playbook and everything it ran on this machine (workers, docker
    # exec), and of the bench's containers (the modules on the hosts) during the run.
    controller_cpu: float = 0.0
    hosts_cpu: float = 0.0
    profile: dict = field(default_factory=dict, repr=False)


def mitogen_strategy_dir() -> Path | None:
    """The strategy plugins of the mitogen in .venv (requirements.txt), None when it is missing."""
    spec = importlib.util.find_spec("ansible_mitogen")
    return Path(spec.origin).parent / "plugins" / "strategy" if spec and spec.origin else None


def ansible_env(mitogen: bool = False, extra: dict | None = None) -> dict:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(WORK / "facts"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="False",
    )
    if mitogen:  # what MITOGEN=1 sets in the Makefile
        env["ANSIBLE_STRATEGY_PLUGINS"] = str(mitogen_strategy_dir())
        env["ANSIBLE_STRATEGY"] = "mitogen_linear"
    env.update(extra or {})
    return env


def write_inventory(name: str, groups: dict | None = None, hostvars: dict | None = None) -> Path:
    """An extra inventory source (JSON is YAML) layered over bench/inventory/hosts.yml."""
    data: dict = {"all": {}}
    if groups:
        data["all"]["children"] = {g: {"hosts": {h: {} for h in hosts}} for g, hosts in groups.items()}
    if hostvars:
        data["all"]["hosts"] = hostvars
    path = WORK / f"{name}.yml"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def playbook(
    name: str,
    extra_inventories: tuple[Path, ...] = (),
    extra_vars: dict | None = None,
    args: tuple[str, ...] = (),
    mitogen: bool = False,
    env: dict | None = None,
    timeout: float = 1200,
) -> PlaybookRun:
    """Run a playbook against the bench inventory; wall time measured around the whole process."""
    cmd = ["ansible-playbook", "-i", str(INVENTORY)]
    for extra in extra_inventories:
        cmd += ["-i", str(extra)]
    path = ROOT / name
    cmd += [str(path), *args]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    with tempfile.NamedTemporaryFile(suffix=".json") as profile_file:
        profiling = {
            "ANSIBLE_CALLBACK_PLUGINS": str(BENCH / "callback"),
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.timer,lbi_profile",
            "LBI_PROFILE_OUT": profile_file.name,
        }
        hosts_before, children_before = hosts_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = run(cmd, timeout, check=False, env=ansible_env(mitogen, {**profiling, **(env or {})}))
        seconds = time.monotonic() - started
        children, hosts_cpu = resource.getrusage(resource.RUSAGE_CHILDREN), hosts_cpu_seconds() - hosts_before
        controller_cpu = (children.ru_utime + children.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
        profile = json.loads(Path(profile_file.name).read_text() or "{}")
    recap = RECAP_RE.findall(result.stdout)
    if result.returncode != 0 or not recap:
        tail = result.stdout[-3000:] + result.stderr[-2000:]
        raise RuntimeError(f"ansible-playbook {name} failed (rc={result.returncode}):\n{tail}")
    changed = sum(int(r[2]) for r in recap)
    log(
        f"  {name} {' '.join(args)}{' [mitogen]' if mitogen else ''}: {seconds:.1f} s, changed={changed}, "
        f"CPU controller {controller_cpu:.1f} s, hosts {hosts_cpu:.1f} s"
    )
    return PlaybookRun(seconds, changed, len(recap), result.stdout, controller_cpu, hosts_cpu, profile)


# Where the kernel counts a container's CPU time: cgroup v1 (ns), then v2 (cpu.stat, usec).
CGROUP_CPU = (
    ("/sys/fs/cgroup/cpuacct/docker/{}/cpuacct.usage", 1e-9),
    ("/sys/fs/cgroup/cpu,cpuacct/docker/{}/cpuacct.usage", 1e-9),
    ("/sys/fs/cgroup/system.slice/docker-{}.scope/cpu.stat", 1e-6),
    ("/sys/fs/cgroup/docker/{}/cpu.stat", 1e-6),
)


def hosts_cpu_seconds() -> float:
    """CPU seconds the running bench containers have used so far (0 where no cgroup file is found)."""
    ids = run(["docker", "ps", "-q", "--no-trunc", "--filter", f"name={PREFIX}"], 60).stdout.split()
    total = 0.0
    for cid in ids:
        for pattern, unit in CGROUP_CPU:
            path = Path(pattern.format(cid))
            if path.exists():
                text = path.read_text()
                value = text.split()[1] if text.startswith("usage_usec") else text.strip()
                total += int(value) * unit
                break
    return total


def breakdown(profile: dict) -> dict:
    """Per role (facts and the playbooks' own tasks apart): wall seconds (from a task's start to the
    next one's), host-seconds (each host's wait for its result) and module runs (results not
    skipped); and every task with the same figures."""
    tasks, end = profile.get("tasks", []), profile.get("end", 0.0)
    roles: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    rows = []
    for index, task in enumerate(tasks):
        wall = (tasks[index + 1]["start"] if index + 1 < len(tasks) else end) - task["start"]
        host_seconds = sum(at - task["start"] for at, _status in task["hosts"].values())
        runs = sum(1 for _at, status in task["hosts"].values() if status != "skipped")
        gathering = task["action"] in ("gather_facts", "ansible.builtin.gather_facts", "setup", "ansible.builtin.setup")
        role = task["role"] or ("facts" if gathering else "(playbook)")
        roles[role].update({"wall": wall, "host_seconds": host_seconds, "runs": runs, "tasks": 1})
        rows.append({"role": role, "name": task["name"], "wall": wall, "host_seconds": host_seconds, "runs": runs})
    return {"roles": {name: dict(counts) for name, counts in roles.items()}, "tasks": rows}


def adhoc(pattern: str, module: str, module_args: str = "", forks: int = 20, env: dict | None = None) -> float:
    """Wall time of one ad-hoc module run over a host pattern."""
    cmd = ["ansible", "-i", str(INVENTORY), pattern, "-m", module, "-f", str(forks), "-o"]
    if module_args:
        cmd += ["-a", module_args]
    started = time.monotonic()
    result = run(cmd, 600, check=False, env=ansible_env(extra=env))
    if result.returncode != 0:
        raise RuntimeError(f"ansible {pattern} -m {module} failed:\n{result.stdout[-2000:]}{result.stderr[-1000:]}")
    return time.monotonic() - started


# --- load generators -------------------------------------------------------------------------

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
WRK_PCT_RE = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)


def wrk(url: str, seconds: int, connections: int = 50, threads: int = 2) -> dict:
    """One bounded wrk run from the load generator; req/s, p50/p99 (ms) and failures."""
    threads = min(threads, connections)
    script = f"timeout {seconds + 20} wrk -t{threads} -c{connections} -d{seconds}s --timeout 5s --latency {url}"
    out = dexec(LOADGEN, script, timeout=seconds + 40)
    pct = {int(p): float(v) * UNIT_MS[u] for p, v, u in WRK_PCT_RE.findall(out)}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not rps or 50 not in pct or 99 not in pct:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "p50_ms": pct[50],
        "p99_ms": pct[99],
        "failed": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, errors.groups())) if errors else 0),
    }


def h2load(url: str, seconds: int, connections: int = 50, threads: int = 2, http1: bool = False) -> dict:
    """One bounded h2load run (HTTP/2, one stream per connection, or HTTP/1.1 with --h1)."""
    logfile = "/tmp/lbi-bench-h2load.log"
    proto = "--h1" if http1 else "-m 1"
    script = (
        f"rm -f {logfile}; timeout {seconds + 20} h2load {proto} -c{connections} -t{threads} -D {seconds} "
        f"--log-file={logfile} {url} >/tmp/lbi-bench-h2load.out 2>&1; "
        f"cat /tmp/lbi-bench-h2load.out; echo '--- log'; cat {logfile}"
    )
    out = dexec(LOADGEN, script, timeout=seconds + 40)
    summary, _, lines = out.partition("--- log")
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", summary)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", summary)
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored", summary)
    # Log columns: start (us since epoch), status, request duration (us).
    durations = sorted(int(cols[2]) / 1000 for cols in (ln.split("\t") for ln in lines.split("\n")) if len(cols) >= 3)
    if not rps or not durations:
        raise RuntimeError(f"unexpected h2load output:\n{summary}")
    failed = (int(codes.group(3)) + int(codes.group(4)) if codes else 0) + (int(done.group(1)) if done else 0)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": durations[len(durations) // 2],
        "p99_ms": durations[min(len(durations) - 1, int(0.99 * len(durations)))],
        "failed": failed,
    }
