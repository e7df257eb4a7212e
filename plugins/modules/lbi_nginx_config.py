#!/usr/bin/python
"""Swap NGINX configuration into place only after the whole tree passed nginx -t (see DOCUMENTATION)."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lbi.tier.plugins.module_utils.lbi_nginx import (
    NginxError,
    apply,
    from_inventory,
    locked,
    plan,
    read_state,
    rotation,
    upstream_files,
)

DOCUMENTATION = r"""
module: lbi_nginx_config
short_description: Change NGINX's files only after a staged copy of the whole tree passed nginx -t
description:
  - Compares the given files with the live ones under I(conf_dir). When something differs, copies
    the live tree to I(staging_dir), writes the changes into the copy, runs C(nginx -t) on the copy
    (relative includes resolve inside it) and only then replaces the changed live files, each
    atomically. A rejected configuration fails the task and leaves every live file as it was.
  - With I(servers), also writes the upstream's server list (lbi/servers.json and the
    lbi/servers.conf rendered from it). A backend the health checker took out of rotation stays
    out when I(keep_health) is true and its address and port are unchanged.
  - Holds the lock that the health checker and the lbi_upstream module also take, so that no two
    writers interleave. Does not reload NGINX; C(reload) says whether a reload is needed.
  - Check mode reports the changes with a diff and still tests them when NGINX is installed.
options:
  conf_dir: {description: The live NGINX configuration directory., type: path, default: /etc/nginx}
  staging_dir: {description: Where the copy is made and tested (root only)., type: path, required: true}
  files: {description: Relative path under conf_dir -> full content., type: dict, default: {}}
  secret_files: {description: "The same for secrets (keys): mode 0600, never in a diff.", type: dict, default: {}}
  absent: {description: Relative paths that must not exist., type: list, elements: str, default: []}
  servers:
    description:
      - The upstream's servers as the inventory describes them, each with name, address, port, weight,
        max_fails, fail_timeout, backup and drain.
    type: list
    elements: dict
  keep_health: {description: Keep servers out that the health checks took out., type: bool, default: true}
  lock_timeout: {description: Seconds to wait for another writer., type: float, default: 60}
  nginx: {description: The nginx binary that tests the staged tree., type: str, default: nginx}
"""

RETURN = r"""
reload: {description: Whether NGINX reads a changed file and must reload., type: bool}
files: {description: The changed relative paths., type: list}
rotation: {description: Backend -> "in rotation" or "down (reasons)" (with servers)., type: dict}
"""


def diffs(conf_dir: str, changes: list, secret: frozenset) -> list:
    return [
        {
            "before_header": f"{conf_dir}/{rel}",
            "after_header": f"{conf_dir}/{rel}" + (" (removed)" if after is None else ""),
            "before": "(secret)\n" if before and rel in secret else before or "",
            "after": "(secret, changed)\n" if after and rel in secret else after or "",
        }
        for rel, before, after in changes
    ]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "conf_dir": {"type": "path", "default": "/etc/nginx"},
            "staging_dir": {"type": "path", "required": True},
            "files": {"type": "dict", "default": {}},
            "secret_files": {"type": "dict", "default": {}, "no_log": True},
            "absent": {"type": "list", "elements": "str", "default": []},
            "servers": {"type": "list", "elements": "dict"},
            "keep_health": {"type": "bool", "default": True},
            "lock_timeout": {"type": "float", "default": 60.0},
            "nginx": {"type": "str", "default": "nginx"},
        },
        supports_check_mode=True,
    )
    params = module.params
    files = {rel: str(content) for rel, content in {**params["files"], **params["secret_files"]}.items()}
    secret = frozenset(params["secret_files"])
    state = None
    try:
        with locked(timeout=params["lock_timeout"]):
            if params["servers"] is not None:
                state = from_inventory(params["servers"], read_state(params["conf_dir"]), params["keep_health"])
                files.update(upstream_files(state))
            changes = plan(params["conf_dir"], files, params["absent"])
            reload = bool(changes) and apply(
                params["conf_dir"], params["staging_dir"], changes, module.check_mode, params["nginx"], secret
            )
    except NginxError as exc:
        module.fail_json(msg=f"lb role: {exc}; the live configuration is unchanged")
    module.exit_json(
        changed=bool(changes),
        reload=reload,
        files=[rel for rel, _before, _after in changes],
        rotation=rotation(state),
        diff=diffs(params["conf_dir"], changes, secret),
    )


if __name__ == "__main__":
    main()
