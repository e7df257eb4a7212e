"""A host rebuilt under its name on another Debian release, as happens to real fleets: site.yml,
run with the project's ansible.cfg (facts cached for a day), provisions it without --flush-cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import docker
import pytest
from testinfra.utils.ansible_runner import AnsibleRunner

from helpers import PROJECT_DIR, ansible_env, http, run_playbook

pytestmark = pytest.mark.destructive

OTHER_RELEASE = {"bullseye": "trixie", "bookworm": "bullseye", "trixie": "bullseye"}
IMAGE = "load-balancer-infra/debian-systemd-ssh:{}"
CODENAME = ". /etc/os-release && echo $VERSION_CODENAME"


def project_env(cache: Path) -> dict:
    return {"ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg"), "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache)}


def adhoc(inventory: str, cache: Path, host: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ansible", "-i", inventory, host, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=ansible_env(**project_env(cache)),
    )


def cached_release(inventory: str, cache: Path, name: str) -> str:
    """The release Ansible's fact cache holds for `name` (an ad-hoc run reads it, gathers nothing)."""
    shown = adhoc(inventory, cache, name, "-m", "ansible.builtin.debug", "-a", "var=ansible_facts.distribution_release")
    assert shown.returncode == 0, shown.stdout[-2000:]
    return shown.stdout.rsplit(":", 1)[1].strip().strip("'\"")


def recreate(name: str, image: str) -> None:
    """The container again under its name, with all its settings but on `image`."""
    client = docker.from_env()
    old = client.containers.get(name)
    config, host_config = old.attrs["Config"], old.attrs["HostConfig"]
    networks = {
        net: {"IPAMConfig": spec.get("IPAMConfig")} for net, spec in old.attrs["NetworkSettings"]["Networks"].items()
    }
    old.remove(force=True)
    created = client.api.create_container(
        image,
        command=config["Cmd"],
        hostname=config["Hostname"],
        name=name,
        labels=config.get("Labels"),
        ports=[tuple(port.split("/")) for port in config.get("ExposedPorts") or {}],  # "22/tcp" -> ("22", "tcp")
        stop_signal=config.get("StopSignal"),
        host_config=host_config,
        networking_config={"EndpointsConfig": networks},
    )
    client.api.start(created["Id"])


def prepare(inventory: str) -> subprocess.CompletedProcess:
    """The scenario's prepare step again: it lets the rebuilt host in and waits for its boot."""
    playbook = PROJECT_DIR / "molecule" / "shared" / "prepare.yml"
    return subprocess.run(
        ["ansible-playbook", "-i", inventory, str(playbook)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=ansible_env(),
    )


def test_a_host_rebuilt_on_another_release_is_provisioned_without_flags(inventory, backends, lb, lb_url, tmp_path):
    name, host = list(backends.items())[-1]
    settings = AnsibleRunner(inventory).get_variables(name)
    if settings.get("ansible_connection") != "ssh":
        pytest.skip(f"{name} is not reached over SSH")
    try:
        docker.from_env().containers.get(name)
    except docker.errors.DockerException:
        pytest.skip(f"{name} is not a container this machine can rebuild")
    before = host.check_output(CODENAME)
    after = OTHER_RELEASE[before]
    cache = tmp_path / "facts"

    # A run from before the rebuild left the host's facts (its release, its Python) in the cache.
    cached = adhoc(inventory, cache, name, "-m", "ansible.builtin.setup")
    assert cached.returncode == 0, cached.stdout[-2000:]
    assert cached_release(inventory, cache, name) == before

    recreate(name, IMAGE.format(after))
    prepared = prepare(inventory)
    assert prepared.returncode == 0, prepared.stdout[-3000:]

    result = run_playbook(inventory, "site.yml", {}, timeout=1500, env=project_env(cache))
    output = result.stdout + result.stderr
    print(f"{name}: {before} -> {after}; site.yml rc {result.returncode}; {output.strip().splitlines()[-1]}")
    assert result.returncode == 0, output[-4000:]
    assert host.check_output(CODENAME) == after
    assert cached_release(inventory, cache, name) == after
    hostname = host.check_output("hostname")
    answers = http(lb, lb_url + "/", 3 * len(backends))
    assert [a["status"] for a in answers] == [200] * len(answers)
    assert hostname in {a["headers"].get("x-backend") for a in answers}, "the rebuilt backend is not in rotation"
