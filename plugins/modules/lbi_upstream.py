#!/usr/bin/python
"""Read or change which backends a load balancer has in rotation (see DOCUMENTATION)."""

from __future__ import annotations

import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.lbi.tier.plugins.module_utils.lbi_nginx import (
    NginxError,
    apply,
    locked,
    names,
    plan,
    read_state,
    reload_nginx,
    rotation,
    set_reason,
    upstream_files,
    wait_gone,
    worker_pids,
)

DOCUMENTATION = r"""
module: lbi_upstream
short_description: Read or change the rotation of the lb role's upstream servers
description:
  - Without I(names), reads lbi/servers.json under I(conf_dir) and returns each backend's rotation
    state; changes nothing.
  - With I(names), takes those backends out of rotation (I(state=down)) or ends that (I(state=up));
    I(drain) sets their inventory drain, I(clear_health) forgets what the health checks decided.
  - With I(clear_health) and no I(names), forgets the health checks' verdict on every backend.
    The new server list is tested like every change (staged copy, C(nginx -t)) before it replaces
    the live files, under the lock every writer takes. With I(reload), NGINX then reloads and the
    module returns the workers of the old configuration.
  - With I(wait_workers), waits up to I(wait_timeout) seconds until those workers have finished.
options:
  conf_dir: {description: The live NGINX configuration directory., type: path, default: /etc/nginx}
  staging_dir: {description: Where the copy is made and tested (root only); needed for a change., type: path}
  names: {description: Backend inventory names to change., type: list, elements: str, default: []}
  state: {description: down takes them out; up ends an earlier down., type: str, choices: [down, up], default: up}
  drain: {description: Backend name -> its lb_drain., type: dict, default: {}}
  clear_health: {description: Drop the health checks' verdict (on all without I(names))., type: bool, default: false}
  lock_timeout: {description: Seconds to wait for another writer., type: float, default: 60}
  nginx: {description: The nginx binary that tests the staged tree., type: str, default: nginx}
  reload: {description: Reload NGINX after a change it reads (never in check mode)., type: bool, default: false}
  wait_workers: {description: PIDs of old workers to wait for (no change)., type: list, elements: int, default: []}
  wait_timeout: {description: Seconds to wait for I(wait_workers)., type: int, default: 60}
"""

RETURN = r"""
rotation: {description: Backend -> "in rotation" or "down (reasons)"; empty without a server list., type: dict}
reload: {description: Whether NGINX reads a changed file and must reload., type: bool}
reloaded: {description: Whether this call reloaded NGINX., type: bool}
old_workers: {description: The workers of the configuration before the reload., type: list}
"""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "conf_dir": {"type": "path", "default": "/etc/nginx"},
            "staging_dir": {"type": "path"},
            "names": {"type": "list", "elements": "str", "default": []},
            "state": {"type": "str", "choices": ["down", "up"], "default": "up"},
            "drain": {"type": "dict", "default": {}},
            "clear_health": {"type": "bool", "default": False},
            "lock_timeout": {"type": "float", "default": 60.0},
            "nginx": {"type": "str", "default": "nginx"},
            "reload": {"type": "bool", "default": False},
            "wait_workers": {"type": "list", "elements": "int", "default": []},
            "wait_timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["wait_workers"]:
        # Then no request the old configuration sent to those servers is still in flight.
        still = wait_gone(params["wait_workers"], params["wait_timeout"])
        if still:
            module.fail_json(msg=f"old NGINX workers {still} still answer after {params['wait_timeout']} s")
        module.exit_json(changed=False)
    if not params["names"] and not params["clear_health"]:
        module.exit_json(changed=False, reload=False, rotation=rotation(read_state(params["conf_dir"])))
    if not params["staging_dir"]:
        module.fail_json(msg="lbi_upstream: staging_dir is required to change the server list")
    try:
        with locked(timeout=params["lock_timeout"]):
            state = read_state(params["conf_dir"])
            missing = sorted(set(params["names"]) - set(names(state)))
            if missing:
                raise NginxError(
                    f"the upstream of this load balancer does not list {', '.join(missing)}; run site.yml first "
                    "so that every load balancer lists every backend"
                )
            new = set_reason(state, "operator", {name: params["state"] == "down" for name in params["names"]})
            drain = {name: boolean(value) for name, value in params["drain"].items() if name in params["names"]}
            new = set_reason(new, "drain", drain)
            if params["clear_health"]:
                new = set_reason(new, "health", dict.fromkeys(params["names"] or names(state), False))
            changes = plan(params["conf_dir"], upstream_files(new))
            reload = bool(changes) and apply(
                params["conf_dir"], params["staging_dir"], changes, module.check_mode, params["nginx"]
            )
            reloaded = params["reload"] and reload and not module.check_mode
            old_workers = worker_pids() if reloaded else []
            if reloaded:
                reload_nginx()
    except NginxError as exc:
        module.fail_json(msg=f"lbi_upstream: {exc}. Nothing was changed.")
    except subprocess.CalledProcessError as exc:
        module.fail_json(msg=f"lbi_upstream: the new server list is live but the reload failed: {exc.stderr}")
    module.exit_json(
        changed=bool(changes), reload=reload, reloaded=reloaded, old_workers=old_workers, rotation=rotation(new)
    )


if __name__ == "__main__":
    main()
