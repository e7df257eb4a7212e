#!/usr/bin/python
"""Write one drop-in file of a systemd unit (see DOCUMENTATION)."""

from __future__ import annotations

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lbi.tier.plugins.module_utils.lbi_nginx import FILE_MODE, write_file

DOCUMENTATION = r"""
module: lbi_systemd_dropin
short_description: Write one drop-in file of a systemd unit, with its directory
description:
  - Makes sure I(root)/I(unit).d/I(name).conf holds exactly I(content) (root's, mode 0644),
    creating the drop-in directory (0755) when needed. The file is replaced atomically, so
    systemd never reads half of it.
  - Neither reloads systemd nor restarts the unit: notify a handler that does, on change.
  - Check mode reports the change with a diff and writes nothing.
options:
  unit: {description: 'The unit, such as nginx.service.', type: str, required: true}
  name: {description: The drop-in's file name without .conf., type: str, default: lbi-hardening}
  content: {description: The whole drop-in., type: str, required: true}
  root: {description: Where unit files and their drop-in directories live., type: path, default: /etc/systemd/system}
"""

RETURN = r"""
path: {description: The drop-in file., type: str}
"""

UNIT = re.compile(r"^[A-Za-z0-9@_.:-]+\.(service|socket|timer|mount|path|target)$")
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "unit": {"type": "str", "required": True},
            "name": {"type": "str", "default": "lbi-hardening"},
            "content": {"type": "str", "required": True},
            "root": {"type": "path", "default": "/etc/systemd/system"},
        },
        supports_check_mode=True,
    )
    unit, name, content = module.params["unit"], module.params["name"], module.params["content"]
    if not UNIT.match(unit):
        module.fail_json(msg=f"lbi_systemd_dropin: unit={unit!r} is not a systemd unit name such as nginx.service")
    if not NAME.match(name):
        module.fail_json(msg=f"lbi_systemd_dropin: name={name!r} must be letters, digits, '.', '_' or '-'")
    path = os.path.join(module.params["root"], f"{unit}.d", f"{name}.conf")
    try:
        with open(path, encoding="utf-8") as handle:
            before, mode = handle.read(), os.fstat(handle.fileno()).st_mode & 0o7777
    except FileNotFoundError:
        before, mode = None, None
    changed = before != content or mode != FILE_MODE
    if changed and not module.check_mode:
        write_file(path, content)
    diff = {"before_header": path, "after_header": path, "before": before or "", "after": content}
    module.exit_json(changed=changed, path=path, diff=diff if changed else {})


if __name__ == "__main__":
    main()
