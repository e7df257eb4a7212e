"""The lb role's upstream servers, and the one way files that NGINX reads are changed.

Used unchanged by the role's modules (as ansible.module_utils.lbi_nginx) and by the health
checker on each load balancer, which gets a copy beside its own code. Standard library only,
Python >= 3.9 (Debian 11's python3).

The servers of the upstream live in two files under the NGINX configuration directory:
lbi/servers.json is the state (one entry per backend, with the reasons it is out of rotation)
and lbi/servers.conf is rendered from it and included by the upstream block. Nobody edits
the .conf: every writer changes the state and renders again, under one lock.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time

SERVERS_JSON = "lbi/servers.json"
SERVERS_CONF = "lbi/servers.conf"
LOCK_PATH = "/run/lbi-nginx.lock"
# Why a server can be out of rotation: the inventory's lb_drain, an operation such as a
# rolling update (entry point server_state), or the active health checks.
REASONS = ("drain", "operator", "health")
SERVER_FIELDS = {
    "name": str,
    "address": str,
    "port": int,
    "weight": int,
    "max_fails": int,
    "fail_timeout": int,
    "backup": bool,
}
FILE_MODE = 0o644
# Secret files (private keys) are written readable by root only.
SECRET_MODE = 0o600


class NginxError(Exception):
    """A change that must not reach the live files (rejected by nginx -t, bad state, lock busy)."""


# --- the state -------------------------------------------------------------------------------


def _server(entry: dict, where: str) -> dict:
    if not isinstance(entry, dict):
        raise NginxError(f"{where}: a server must be a mapping, not {entry!r}")
    server = {}
    for field, kind in SERVER_FIELDS.items():
        value = entry.get(field)
        if kind is bool:
            if not isinstance(value, bool):
                raise NginxError(f"{where}: {field}={value!r} must be true or false")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
                raise NginxError(f"{where}: {field}={value!r} must be a whole number")
            value = int(value)
        elif not isinstance(value, str) or not value or any(c.isspace() or c in ";{}#" for c in value):
            raise NginxError(f"{where}: {field}={value!r} must be a word without spaces or ;{{}}#")
        server[field] = value
    down = entry.get("down", [])
    if not isinstance(down, list) or any(reason not in REASONS for reason in down):
        raise NginxError(f"{where}: down={down!r} must list reasons among {', '.join(REASONS)}")
    server["down"] = sorted(set(down))
    return server


def make_state(servers: list) -> dict:
    """A validated state from a list of server mappings (names unique)."""
    checked = [_server(entry, f"server {index + 1}") for index, entry in enumerate(servers)]
    names = [server["name"] for server in checked]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise NginxError(f"servers listed more than once: {', '.join(twice)}")
    return {"servers": checked}


def parse_state(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise NginxError(f"{SERVERS_JSON} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("servers"), list):
        raise NginxError(f"{SERVERS_JSON} must hold an object with a list of servers")
    return make_state(data["servers"])


def dump_state(state: dict) -> str:
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


def read_state(conf_dir: str) -> dict | None:
    """The live state, or None when the role has not written one yet."""
    try:
        with open(os.path.join(conf_dir, SERVERS_JSON), encoding="utf-8") as handle:
            return parse_state(handle.read())
    except FileNotFoundError:
        return None


def names(state: dict | None) -> list:
    return [server["name"] for server in (state or {"servers": []})["servers"]]


def in_rotation(server: dict) -> bool:
    return not server["down"]


def rotation(state: dict | None) -> dict:
    """Backend name -> "in rotation" or "down (<reasons>)"."""
    return {
        server["name"]: "in rotation" if in_rotation(server) else f"down ({', '.join(server['down'])})"
        for server in (state or {"servers": []})["servers"]
    }


def endpoint(server: dict) -> str:
    address = server["address"]
    return f"[{address}]:{server['port']}" if ":" in address else f"{address}:{server['port']}"


def server_line(server: dict) -> str:
    flags = f"weight={server['weight']} max_fails={server['max_fails']} fail_timeout={server['fail_timeout']}s"
    flags += " backup" if server["backup"] else ""
    flags += " down" if server["down"] else ""
    # The reasons stay in servers.json: a new reason for a server already down changes
    # nothing NGINX reads, so it needs no reload.
    return f"server {endpoint(server)} {flags};  # {server['name']}"


def render_conf(state: dict) -> str:
    lines = [
        "# Written by load-balancer-infra from servers.json beside it; change the inventory instead.",
        *(server_line(server) for server in state["servers"]),
    ]
    return "\n".join(lines) + "\n"


def from_inventory(servers: list, previous: dict | None, keep_health: bool) -> dict:
    """The state the inventory describes. With keep_health, a backend the health checks took
    out stays out (same name and endpoint), so a run of site.yml does not undo them."""
    state = make_state([{**entry, "down": ["drain"] if entry.get("drain") else []} for entry in servers])
    if keep_health and previous:
        before = {server["name"]: server for server in previous["servers"]}
        for server in state["servers"]:
            old = before.get(server["name"])
            if old and "health" in old["down"] and endpoint(old) == endpoint(server):
                server["down"] = sorted({*server["down"], "health"})
    return state


def set_reason(state: dict, reason: str, wanted: dict) -> dict:
    """A copy of state where each server named in `wanted` (name -> bool) has `reason` or not."""
    if reason not in REASONS:
        raise NginxError(f"unknown reason {reason!r}")
    missing = sorted(set(wanted) - set(names(state)))
    if missing:
        raise NginxError(f"not in the upstream: {', '.join(missing)}")
    new = copy.deepcopy(state)
    for server in new["servers"]:
        if server["name"] in wanted:
            reasons = set(server["down"])
            (reasons.add if wanted[server["name"]] else reasons.discard)(reason)
            server["down"] = sorted(reasons)
    return new


def apply_health(state: dict, failing: set, passing: set) -> tuple:
    """Take `failing` servers out for health and bring `passing` ones back, but never leave
    the upstream without a server in rotation: then the failing servers that were still in
    rotation stay in. Returns (new state, names kept in although failing)."""
    wanted = {name: True for name in failing}
    wanted.update({name: False for name in passing if name not in failing})
    wanted = {name: value for name, value in wanted.items() if name in names(state)}
    new = set_reason(state, "health", wanted)
    kept = []
    if not any(in_rotation(s) for s in new["servers"]) and any(in_rotation(s) for s in state["servers"]):
        kept = [s["name"] for s in state["servers"] if in_rotation(s)]
        new = set_reason(new, "health", {name: False for name in kept})
    return new, kept


def upstream_files(state: dict) -> dict:
    """The two files of the upstream's servers, relative to the NGINX configuration directory."""
    return {SERVERS_CONF: render_conf(state), SERVERS_JSON: dump_state(state)}


# --- changing the live files -----------------------------------------------------------------


@contextlib.contextmanager
def locked(path: str | None = None, timeout: float = 60.0):
    """Hold the lock every writer of NGINX's files takes (the role's modules, the checker)."""
    path = path or LOCK_PATH
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise NginxError(f"another change to NGINX's files holds {path} (waited {timeout:.0f} s)") from exc
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def plan(conf_dir: str, files: dict, absent: list = ()) -> list:
    """The changes to make: (relative path, content before, content after; None = no file)."""
    changes = []
    for rel, content in sorted(files.items()):
        before = _read(os.path.join(conf_dir, rel))
        if before != content:
            changes.append((rel, before, content))
    for rel in absent:
        path = os.path.join(conf_dir, rel)
        if os.path.lexists(path):
            changes.append((rel, _read(path) if not os.path.islink(path) else f"symlink to {os.readlink(path)}", None))
    return changes


def write_file(path: str, content: str, mode: int = FILE_MODE) -> None:
    """Replace path atomically: readers see the old file or the new one, never a part.
    A directory made for a secret file is root's only."""
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700 if mode == SECRET_MODE else 0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".lbi-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _put(root: str, changes: list, secret: frozenset = frozenset()) -> None:
    # Secrets first, so that a directory they share with other files is made root's only.
    for rel, _before, after in sorted(changes, key=lambda change: change[0] not in secret):
        path = os.path.join(root, rel)
        if after is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            write_file(path, after, SECRET_MODE if rel in secret else FILE_MODE)


def validate_staged(conf_dir: str, staging_dir: str, changes: list, nginx: str = "nginx", secret=frozenset()) -> None:
    """Copy the live tree, apply the changes to the copy and test the copy as a whole (its
    relative includes resolve inside it). Raises NginxError with NGINX's own message."""
    shutil.rmtree(staging_dir, ignore_errors=True)
    os.makedirs(os.path.dirname(staging_dir), mode=0o700, exist_ok=True)
    subprocess.run(["cp", "-a", conf_dir, staging_dir], check=True, capture_output=True)
    _put(staging_dir, changes, secret)
    test = subprocess.run(
        [nginx, "-t", "-q", "-c", os.path.join(staging_dir, "nginx.conf")], capture_output=True, text=True
    )
    if test.returncode != 0:
        raise NginxError(f"nginx -t rejected the new configuration: {(test.stderr or test.stdout).strip()}")


def needs_reload(changes: list) -> bool:
    """Whether NGINX reads any changed file (the state file is for the writers only)."""
    return any(rel != SERVERS_JSON for rel, _before, _after in changes)


def apply(
    conf_dir: str, staging_dir: str, changes: list, check: bool = False, nginx: str = "nginx", secret=frozenset()
) -> bool:
    """Test the changes on a staged copy, then (unless check) swap them into the live tree.
    Returns whether NGINX must reload. Call it holding locked()."""
    if needs_reload(changes) and os.path.isdir(conf_dir):
        validate_staged(conf_dir, staging_dir, changes, nginx, secret)
    if not check:
        # The state file last: after a crash in between, the next writer renders again from it.
        _put(conf_dir, sorted(changes, key=lambda change: change[0] == SERVERS_JSON), secret)
    return needs_reload(changes)


def reload_nginx(unit: str = "nginx.service") -> bool:
    """Reload NGINX gracefully if it runs; returns whether it was reloaded."""
    if subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode != 0:
        return False
    subprocess.run(["systemctl", "reload", unit], check=True, capture_output=True)
    return True


def worker_pids(unit: str = "nginx.service") -> list:
    """The worker processes of the unit's own master (never those of another NGINX on the host)."""
    show = ["systemctl", "show", "--property", "MainPID", "--value", unit]
    master = subprocess.run(show, capture_output=True, text=True, check=False).stdout.strip()
    if not master.isdigit() or master == "0":
        return []
    pgrep = ["pgrep", "-P", master, "-f", "^nginx: worker process$"]
    return [int(pid) for pid in subprocess.run(pgrep, capture_output=True, text=True, check=False).stdout.split()]


def wait_gone(pids: list, timeout: float, proc: str = "/proc") -> list:
    """Wait until none of the processes runs; returns those still running when the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if os.path.exists(f"{proc}/{pid}")]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)
