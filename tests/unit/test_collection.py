"""The repository as the collection lbi.tier: it builds, installs into an empty directory and runs from there.

Nothing of the repository is on the paths of the installed run (its own ansible.cfg, roles and
collections/ link are not read), so what works here works for a user of the built collection.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import textwrap

import pytest
import yaml
from conftest import PROJECT

ROLES = sorted(path.parent.parent.name for path in PROJECT.glob("roles/*/meta/argument_specs.yml"))
LEFT_OUT = ("tests/", "molecule/", "bench/", "collections/", "inventory/", "scripts/", "images/", ".venv", "app/.venv")


def run(argv: list, cwd, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(map(str, argv))}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the built tarball's file names, environment and directory of a run that sees only the installed collection)"""
    root = tmp_path_factory.mktemp("collection")
    (root / "ansible.cfg").write_text("[defaults]\n")
    bin_dir = PROJECT / ".venv" / "bin"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(root),
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(root / "collections"),
        "ANSIBLE_ROLES_PATH": str(root / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(root / "tmp"),
    }
    run(["ansible-galaxy", "collection", "build", "--output-path", root / "dist", PROJECT], root, env)
    (tarball,) = (root / "dist").glob("lbi-tier-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    # Galaxy is not reachable here; the dependencies (community.crypto) come with the ansible package.
    run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", root / "collections", tarball], root, env)
    return names, env, root


def test_the_collection_holds_the_roles_plugins_and_operation_playbooks_only(installed):
    names, _env, _root = installed
    for role in ROLES:
        assert f"roles/{role}/meta/argument_specs.yml" in names, role
    for wanted in ("plugins/modules/lbi_upstream.py", "plugins/modules/lbi_wheelhouse.py", "plugins/filter/lbi.py",
                   "plugins/module_utils/lbi_nginx.py", "playbooks/site.yml", "playbooks/rolling_update.yml",
                   "app/pyproject.toml", "app/requirements.lock", "meta/runtime.yml"):  # fmt: skip
        assert wanted in names, wanted
    assert not [name for name in names if name.startswith(LEFT_OUT)]
    assert not [name for name in names if name.startswith("playbooks/lab_")]


def test_ansible_doc_shows_each_roles_arguments(installed):
    _names, env, root = installed
    doc = run(["ansible-doc", "-t", "role", "--json", *(f"lbi.tier.{role}" for role in ROLES)], root, env)
    shown = json.loads(doc.stdout)
    for role in ROLES:
        specs = yaml.safe_load((PROJECT / "roles" / role / "meta" / "argument_specs.yml").read_text())
        options = shown[f"lbi.tier.{role}"]["entry_points"]["main"]["options"]
        assert set(options) == set(specs["argument_specs"]["main"]["options"]), role
    assert "backend_wsgi_app" in shown["lbi.tier.backend"]["entry_points"]["main"]["options"]


def test_a_playbook_uses_the_roles_modules_and_filters_by_their_full_names(installed):
    _names, env, root = installed
    (root / "inventory.yml").write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        group: {"hosts": {name: {"ansible_connection": "local"}}}
                        for group, name in (("backends", "web1"), ("loadbalancers", "lb1"), ("monitoring", "mon1"))
                    }
                }
            }
        )
    )
    # Checks that change nothing, run for real on the controller: the backend role's preflight reads
    # the reference app shipped in the collection, and the wheelhouse module previews its build.
    (root / "own.yml").write_text(
        textwrap.dedent(
            """\
            - name: A user's own play, on the installed collection only
              hosts: web1
              gather_facts: true
              tasks:
                - name: The backend role's checks
                  ansible.builtin.include_role:
                    name: lbi.tier.backend
                    tasks_from: preflight
                    public: true
                  vars:
                    backend_private_users: false
                    backend_listen_address: 127.0.0.1
                - name: Preview the wheelhouse of the reference app (check mode builds nothing)
                  lbi.tier.lbi_wheelhouse:
                    src: "{{ shipped_app }}"
                    lock: "{{ shipped_app }}/requirements.lock"
                    dest: "{{ playbook_dir }}/wheelhouse"
                    python_version: "{{ (ansible_facts | lbi.tier.lbi_python_target).split()[0] }}"
                    arch: "{{ (ansible_facts | lbi.tier.lbi_python_target).split()[1] }}"
                  check_mode: true
                  register: preview
                - name: Check what the module and a filter answer
                  ansible.builtin.assert:
                    that: preview.release_id | length == 16 and ('::1' | lbi.tier.lbi_hostport(8000)) == '[::1]:8000'
            """
        )
    )
    run(["ansible-playbook", "-i", "inventory.yml", "lbi.tier.site", "lbi.tier.rolling_update", "--syntax-check"],
        root, env)  # fmt: skip
    python = "ansible_python_interpreter=" + str(PROJECT / ".venv" / "bin" / "python")
    shipped = "shipped_app=" + str(root / "collections" / "ansible_collections" / "lbi" / "tier" / "app")
    result = run(["ansible-playbook", "-i", "inventory.yml", "own.yml", "-e", python, "-e", shipped], root, env)
    assert "failed=0" in result.stdout and "ok=" in result.stdout, result.stdout[-3000:]
