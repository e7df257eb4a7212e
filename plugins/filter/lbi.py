"""Filters shared by the roles: how an address is written, the upstream from inventory, unit sandboxes,
the shared certificate."""

from __future__ import annotations

import base64
import re


def lbi_host(address):
    """'::1' -> '[::1]'; IPv4 addresses and names are returned as they are."""
    text = str(address)
    if ":" in text and not text.startswith("["):
        return f"[{text}]"
    return text


def lbi_hostport(address, port):
    """The address and port as NGINX, Prometheus and URLs write them: '[::1]:80', '10.0.0.1:80'."""
    return f"{lbi_host(address)}:{port}"


# The whole-number fields of an upstream server: its host var, lowest and highest value.
_NUMBERS = {
    "port": ("backend_port", 1, 65535),
    "weight": ("lb_weight", 1, None),
    "max_fails": ("lb_max_fails", 0, None),
    "fail_timeout": ("lb_fail_timeout", 1, None),
}
_ADDRESS = re.compile(r"^([0-9.]+|[0-9a-fA-F:]*:[0-9a-fA-F:]*|[A-Za-z0-9.-]+)$")


def lbi_servers(names, hostvars, defaults):
    """The lb role's upstream servers from each backend's host vars; `defaults` maps
    port, weight, max_fails and fail_timeout to the role's values for hosts that set none."""
    servers = []
    for name in names:
        host = hostvars[name]
        facts = host.get("ansible_facts") or {}
        server = {
            "name": name,
            "address": str(host.get("backend_listen_address") or (facts.get("default_ipv4") or {}).get("address", "")),
            "backup": host.get("lb_backup", False),
            "drain": host.get("lb_drain", False),
        }
        for field, (var, _low, _high) in _NUMBERS.items():
            server[field] = host.get(var, defaults[field])
        servers.append(server)
    return servers


def lbi_server_problems(servers, algorithm, group):
    """One message per broken rule of the upstream server list, naming the host var and the backend."""
    problems = []
    for server in servers:
        name = server["name"]
        if not _ADDRESS.match(server["address"]):
            problems.append(
                f"backend_listen_address={server['address']} of backend {name} must be an IP address or host name "
                "(set it, or gather the backend's facts)"
            )
        for field, (var, low, high) in _NUMBERS.items():
            value = server[field]
            number = int(value) if not isinstance(value, bool) and str(value).isdigit() else None
            if number is None or number < low or (high is not None and number > high):
                rule = f"a port from {low} to {high}" if high else f"a whole number >= {low}"
                problems.append(f"{var}={value} of backend {name} must be {rule}")
        for field in ("backup", "drain"):
            if not isinstance(server[field], bool):
                problems.append(f"lb_{field}={server[field]} of backend {name} must be true or false")
    if problems:
        return problems
    backups = [server["name"] for server in servers if server["backup"]]
    if backups and algorithm not in ("round_robin", "least_conn"):
        problems.append(
            f"lb_backup is true on {', '.join(backups)} but lb_algorithm={algorithm}; "
            "NGINX allows backup servers only with round_robin and least_conn"
        )
    if not any(not server["drain"] and not server["backup"] for server in servers):
        problems.append(
            f"every backend of {group} has lb_drain=true or lb_backup=true; at least one must be neither, "
            "or nothing serves"
        )
    endpoints = [lbi_hostport(server["address"], server["port"]) for server in servers]
    if len(set(endpoints)) != len(endpoints):
        listed = ", ".join(f"{server['name']}={endpoint}" for server, endpoint in zip(servers, endpoints))
        problems.append(f"backends must not share an address and port (backend_listen_address, backend_port): {listed}")
    return problems


# What every service of the tier gets from systemd; each role adds what its service needs.
SANDBOX = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": ["AF_INET", "AF_INET6", "AF_UNIX"],
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "SystemCallErrorNumber": "EPERM",
}


def lbi_systemd_sandbox(changes=None, unit=None):
    """A unit drop-in: SANDBOX with `changes` applied. None drops a setting; a list is written
    space-separated. `unit` adds a [Unit] section (ordering, dependencies)."""
    lines = [*(["[Unit]", *(f"{key}={value}" for key, value in unit.items()), ""] if unit else []), "[Service]"]
    for key, value in {**SANDBOX, **(changes or {})}.items():
        if value is not None:
            lines.append(f"{key}={' '.join(map(str, value)) if isinstance(value, list) else value}")
    return "\n".join(lines) + "\n"


def lbi_first_pair(slurped, hosts, files=("lbi.crt", "lbi.key")):
    """From slurp results looped over [host, file], the files of the first of `hosts` that has
    all of them, decoded: {"lbi.crt": "...", "lbi.key": "..."}; {} when none has."""
    found = {tuple(r["item"]): r["content"] for r in slurped if "content" in r and "item" in r}
    for host in hosts:
        if all((host, name) in found for name in files):
            return {name: base64.b64decode(found[host, name]).decode() for name in files}
    return {}


def lbi_python_target(facts):
    """What a wheelhouse is built for, from a host's facts: "<major>.<minor> <architecture>"."""
    version = facts["python"]["version"]
    return f"{version['major']}.{version['minor']} {facts['architecture']}"


class FilterModule:
    def filters(self):
        return {
            "lbi_host": lbi_host,
            "lbi_hostport": lbi_hostport,
            "lbi_servers": lbi_servers,
            "lbi_server_problems": lbi_server_problems,
            "lbi_systemd_sandbox": lbi_systemd_sandbox,
            "lbi_first_pair": lbi_first_pair,
            "lbi_python_target": lbi_python_target,
        }
