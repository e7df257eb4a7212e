#!/usr/bin/python3
"""Active health checks for the upstream servers of the lb role, on one load balancer.

Every `interval` seconds it asks each backend of lbi/servers.json for `path` on a fresh
connection, giving it `timeout` seconds for the whole answer; only a 200 passes (a draining
backend answers 503). A backend that fails `fall` checks in a row is taken out of rotation,
one that passes `rise` in a row comes back; while such a change is under way, rounds come
every half interval. Changes go through lbi_nginx, the same code
the role's modules use: under the writers' lock, tested with nginx -t on a staged copy,
swapped, reloaded. It never takes the last server in rotation out, and it never writes
or reloads while every verdict matches the live files. State for people and tests goes to
`status_file`, metrics to `textfile` (the node exporter's textfile collector).

    lbi_healthcheck.py --config /etc/load-balancer-infra/healthcheck.json
    lbi_healthcheck.py --check-config FILE      # validate a configuration, exit 1 naming the key
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lbi_nginx

# key -> (type, check, what a valid value is)
CONFIG = {
    "conf_dir": (str, lambda v: v.startswith("/"), "an absolute path"),
    "staging_dir": (str, lambda v: v.startswith("/"), "an absolute path"),
    "path": (str, lambda v: v.startswith("/") and not any(c.isspace() for c in v), "a URL path such as /health"),
    "interval": (float, lambda v: 0.1 <= v <= 60, "seconds from 0.1 to 60"),
    "timeout": (float, lambda v: v > 0, "seconds > 0"),
    "fall": (int, lambda v: 1 <= v <= 100, "a count from 1 to 100"),
    "rise": (int, lambda v: 1 <= v <= 100, "a count from 1 to 100"),
    "status_file": (str, lambda v: v.startswith("/"), "an absolute path"),
    "textfile": (str, lambda v: v == "" or (v.startswith("/") and v.endswith(".prom")), "empty or a .prom path"),
    "nginx_unit": (str, lambda v: bool(v), "a systemd unit name"),
    "lock_timeout": (float, lambda v: v > 0, "seconds > 0"),
}


class ConfigError(ValueError):
    pass


def load_config(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("must be a JSON object")
    unknown = sorted(set(data) - set(CONFIG))
    if unknown:
        raise ConfigError(f"unknown keys: {', '.join(unknown)}")
    config = {}
    for key, (kind, check, want) in CONFIG.items():
        if key not in data:
            raise ConfigError(f"{key} is missing ({want})")
        value = data[key]
        if kind is str:
            ok = isinstance(value, str)
        else:
            numbers = (int,) if kind is int else (int, float)
            ok = isinstance(value, numbers) and not isinstance(value, bool)
        if not ok or not check(kind(value)):
            raise ConfigError(f"{key}={value!r} must be {want}")
        config[key] = kind(value)
    if config["timeout"] >= config["interval"]:
        raise ConfigError(f"timeout={config['timeout']} must be shorter than interval={config['interval']}")
    return config


@dataclass
class Result:
    ok: bool
    detail: str
    seconds: float


def probe(address: str, port: int, path: str, timeout: float) -> Result:
    """GET path on a fresh connection; the whole exchange must end within timeout seconds."""
    started = time.monotonic()
    deadline = started + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out")
        return remaining

    host = f"[{address}]" if ":" in address else address
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: lbi-healthcheck\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection((address, port), timeout=left()) as sock:
            sock.settimeout(left())
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < 1024:
                sock.settimeout(left())
                chunk = sock.recv(1024)
                if not chunk:
                    break
                head += chunk
    except socket.timeout:
        return Result(False, f"timed out after {timeout:g} s", time.monotonic() - started)
    except OSError as exc:
        return Result(False, exc.strerror or type(exc).__name__, time.monotonic() - started)
    seconds = time.monotonic() - started
    parts = head.split(b"\r\n", 1)[0].split()
    status = parts[1].decode("ascii", "replace") if len(parts) > 1 else ""
    if status == "200":
        return Result(True, "HTTP 200", seconds)
    if not status:
        return Result(False, "no HTTP answer", seconds)
    return Result(False, f"HTTP {status}" + (" (draining)" if status == "503" else ""), seconds)


@dataclass
class Backend:
    """What the checker knows of one backend; `healthy` is the verdict after fall/rise."""

    endpoint: str
    healthy: bool
    fails: int = 0
    passes: int = 0
    last: Result | None = None
    transitions: int = 0
    in_rotation: bool | None = None
    rotation_changed_at: float | None = None
    kept: bool = False


@dataclass
class Checker:
    config: dict
    prober: Callable[[str, int, str, float], Result] = probe
    reloader: Callable[[str], bool] = lbi_nginx.reload_nginx
    log: Callable[[str], None] = print
    wall: Callable[[], float] = time.time
    nginx: str = "nginx"
    backends: dict = field(default_factory=dict)
    reloads: int = 0
    started_at: float = 0.0
    last_run_at: float = 0.0
    last_error: str = ""

    def probe_all(self, servers: list) -> dict:
        results: dict = {}
        timeout = self.config["timeout"]

        def one(server: dict) -> None:
            results[server["name"]] = self.prober(server["address"], server["port"], self.config["path"], timeout)

        threads = [threading.Thread(target=one, args=(server,), daemon=True) for server in servers]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + timeout + 0.2
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        late = Result(False, f"timed out after {timeout:g} s", timeout)
        return {server["name"]: results.get(server["name"], late) for server in servers}

    def judge(self, state: dict, results: dict) -> None:
        """Update each backend's streaks and verdict; log verdicts that change."""
        fall, rise = self.config["fall"], self.config["rise"]
        seen = {}
        for server in state["servers"]:
            name, endpoint = server["name"], lbi_nginx.endpoint(server)
            backend = self.backends.get(name)
            if backend is None or backend.endpoint != endpoint:
                backend = Backend(endpoint=endpoint, healthy="health" not in server["down"])
            result = results[name]
            backend.last = result
            if result.ok:
                backend.passes, backend.fails = backend.passes + 1, 0
            else:
                backend.fails, backend.passes = backend.fails + 1, 0
            if backend.healthy and backend.fails >= fall:
                backend.healthy, backend.transitions = False, backend.transitions + 1
                self.log(f"{name} ({endpoint}) fails its health checks: {fall} in a row, last {result.detail}")
            elif not backend.healthy and backend.passes >= rise:
                backend.healthy, backend.transitions = True, backend.transitions + 1
                self.log(f"{name} ({endpoint}) passes its health checks again: {rise} in a row")
            seen[name] = backend
        self.backends = seen

    def reconcile(self) -> None:
        """Make the live upstream agree with the verdicts (the lock held; the file read afresh)."""
        conf_dir = self.config["conf_dir"]
        with lbi_nginx.locked(timeout=self.config["lock_timeout"]):
            live = lbi_nginx.read_state(conf_dir)
            if live is None:
                return
            known = {name: backend for name, backend in self.backends.items() if name in lbi_nginx.names(live)}
            failing = {name for name, backend in known.items() if not backend.healthy}
            new, kept = lbi_nginx.apply_health(live, failing, set(known) - failing)
            for name, backend in known.items():
                if name in kept and not backend.kept:
                    self.log(f"{name} stays in rotation although it fails its health checks: no other server is in")
                backend.kept = name in kept
            if new == live:
                return
            changes = lbi_nginx.plan(conf_dir, lbi_nginx.upstream_files(new))
            if lbi_nginx.apply(conf_dir, self.config["staging_dir"], changes, nginx=self.nginx) and self.reloader(
                self.config["nginx_unit"]
            ):
                self.reloads += 1
            before, after = lbi_nginx.rotation(live), lbi_nginx.rotation(new)
            for name in lbi_nginx.names(new):
                if before.get(name) != after[name]:
                    self.log(f"{name}: {before.get(name, 'new')} -> {after[name]}")

    def note_rotation(self, state: dict | None) -> None:
        now = self.wall()
        for server in (state or {"servers": []})["servers"]:
            backend = self.backends.get(server["name"])
            if backend is not None:
                current = lbi_nginx.in_rotation(server)
                if backend.in_rotation is not None and backend.in_rotation != current:
                    backend.rotation_changed_at = now
                backend.in_rotation = current

    def run_once(self) -> None:
        conf_dir = self.config["conf_dir"]
        state = lbi_nginx.read_state(conf_dir)
        if state is None:
            self.backends = {}
        else:
            self.judge(state, self.probe_all(state["servers"]))
            if any(self.backends[s["name"]].healthy == ("health" in s["down"]) for s in state["servers"]):
                try:
                    self.reconcile()
                    self.last_error = ""
                except (lbi_nginx.NginxError, OSError, ValueError) as exc:
                    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    if message != self.last_error:
                        self.log(f"cannot change the upstream now (will try again): {message}")
                    self.last_error = message
                state = lbi_nginx.read_state(conf_dir)
        self.note_rotation(state)
        self.last_run_at = self.wall()
        self.write_outputs(state)

    def status(self, state: dict | None) -> dict:
        servers = {}
        for server in (state or {"servers": []})["servers"]:
            backend = self.backends.get(server["name"])
            if backend is None:
                continue
            servers[server["name"]] = {
                "endpoint": backend.endpoint,
                "healthy": backend.healthy,
                "in_rotation": lbi_nginx.in_rotation(server),
                "down": server["down"],
                "fails": backend.fails,
                "passes": backend.passes,
                "last": backend.last.detail if backend.last else "",
                "last_seconds": round(backend.last.seconds, 4) if backend.last else None,
                "transitions": backend.transitions,
                "rotation_changed_at": backend.rotation_changed_at,
            }
        return {
            "started_at": self.started_at,
            "last_run_at": self.last_run_at,
            "reloads": self.reloads,
            "last_error": self.last_error,
            "servers": servers,
        }

    def metrics(self, status: dict) -> str:
        lines = []

        def family(name: str, kind: str, text: str, samples: list) -> None:
            lines.extend([f"# HELP {name} {text}", f"# TYPE {name} {kind}"])
            lines.extend(f"{name}{labels} {value}" for labels, value in samples)

        servers = sorted(status["servers"].items())
        family(
            "lbi_healthcheck_backend_healthy",
            "gauge",
            "1 while the backend passes its active health checks (after fall and rise), else 0.",
            [(f'{{backend="{n}"}}', int(s["healthy"])) for n, s in servers],
        )
        family(
            "lbi_healthcheck_backend_in_rotation",
            "gauge",
            "1 while this load balancer sends the backend requests, else 0.",
            [(f'{{backend="{n}"}}', int(s["in_rotation"])) for n, s in servers],
        )
        family(
            "lbi_healthcheck_probe_duration_seconds",
            "gauge",
            "Duration of the last health check of the backend.",
            [(f'{{backend="{n}"}}', s["last_seconds"] or 0) for n, s in servers],
        )
        family(
            "lbi_healthcheck_transitions_total",
            "counter",
            "Changes of the backend's health verdict since the checker started.",
            [(f'{{backend="{n}"}}', s["transitions"]) for n, s in servers],
        )
        family("lbi_healthcheck_reloads_total", "counter", "NGINX reloads made by the checker.", [("", self.reloads)])
        family(
            "lbi_healthcheck_last_run_timestamp_seconds",
            "gauge",
            "When the checker last probed every backend (Unix time).",
            [("", round(self.last_run_at, 3))],
        )
        return "\n".join(lines) + "\n"

    def write_outputs(self, state: dict | None) -> None:
        status = self.status(state)
        lbi_nginx.write_file(self.config["status_file"], json.dumps(status, indent=1, sort_keys=True) + "\n")
        textfile = self.config["textfile"]
        if textfile and os.path.isdir(os.path.dirname(textfile)):
            lbi_nginx.write_file(textfile, self.metrics(status))

    def next_delay(self) -> float:
        """Seconds to the next round: half the interval while some verdict is about to change
        (a healthy backend failed, an unhealthy one passed), so that it changes sooner."""
        interval = self.config["interval"]
        pending = any(b.fails if b.healthy else b.passes for b in self.backends.values())
        return interval / 2 if pending else interval

    def run(self, stop: threading.Event) -> None:
        self.started_at = self.wall()
        interval = self.config["interval"]
        self.log(
            f"checking {self.config['path']} every {interval:g} s (timeout {self.config['timeout']:g} s, "
            f"out after {self.config['fall']} failures, back after {self.config['rise']} passes)"
        )
        next_at = time.monotonic()
        while not stop.is_set():
            self.run_once()
            # A fixed schedule; a late round does not cause a burst of probes to catch up.
            next_at = max(next_at + self.next_delay(), time.monotonic())
            stop.wait(max(0.0, next_at - time.monotonic()))


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--config", help="run with this configuration")
    group.add_argument("--check-config", help="validate this configuration and exit")
    args = parser.parse_args(argv)
    path = args.config or args.check_config
    try:
        with open(path, encoding="utf-8") as handle:
            config = load_config(handle.read())
    except (OSError, ConfigError) as exc:
        print(f"lbi_healthcheck: {path}: {exc}", file=sys.stderr)
        return 1
    if args.check_config:
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Checker(config, log=lambda line: print(line, flush=True)).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
