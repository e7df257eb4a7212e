#!/usr/bin/python
"""Build the application's wheelhouse on the controller (see DOCUMENTATION)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: lbi_wheelhouse
short_description: Build an application wheel plus its pinned dependency wheels for a target platform
description:
  - Runs on the controller (delegate to localhost). Builds the application wheel from I(src), or
    takes the prebuilt I(wheel), and downloads the wheels of every pinned dependency in the lock
    file for one target Python version and CPU architecture, so that hosts install with
    C(pip --no-index) and never contact a package index.
  - The result is cached under I(dest) and keyed by a fingerprint of the inputs (application
    sources or wheel, lock file, Python version, architecture); an unchanged fingerprint builds nothing.
  - Also writes C(wheelhouse.tar), the same files in one reproducible archive, so that a host
    receives them in a single transfer.
  - Writes C(install.txt), the lock plus the application wheel with its sha256, so hosts install
    everything in hash-checking mode.
  - Check mode builds and writes nothing; without a cached wheelhouse it reports a change.
options:
  src: {description: Application source directory (holds pyproject.toml); or give I(wheel)., type: path}
  wheel: {description: Prebuilt application wheel (a C(.whl) file); or give I(src)., type: path}
  lock: {description: Lock file with exact pins and hashes., type: path, required: true}
  dest: {description: Cache directory for wheelhouses., type: path, required: true}
  python_version: {description: Target Python version, C(3.11)., type: str, required: true}
  arch: {description: Target architecture as in ansible_facts.architecture., type: str, required: true}
"""

RETURN = r"""
release_id: {description: Fingerprint of the inputs; names the release directory on hosts., type: str}
path: {description: Directory holding the wheels and install.txt., type: str}
files: {description: File names in the wheelhouse (the archive excluded)., type: list}
archive: {description: Path of wheelhouse.tar, holding exactly those files., type: str}
app_version: {description: Version of the application wheel., type: str}
"""


EXCLUDED_DIRS = {"__pycache__", ".venv", "build", "dist", ".pytest_cache", ".ruff_cache", "tests", "container"}
# Files beside the project that never reach its wheel: editing them is no new release.
EXCLUDED_FILES = {"Dockerfile", ".dockerignore", ".gitignore", ".coverage"}
# Reproducible wheel timestamps (zip entries), so identical sources give identical bytes.
SOURCE_DATE_EPOCH = "1700000000"
PLATFORM_TAGS = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
# Wheelhouses kept in the cache; older ones (earlier sources) are removed after a build.
KEEP_BUILDS = 6


def source_files(src):
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")) and name not in EXCLUDED_FILES:
                yield os.path.join(root, name)


def fingerprint(app, lock, python_version, arch):
    """`app`: the source directory, or the path of a prebuilt wheel (its name counts, not its directory)."""
    digest = hashlib.sha256(f"{python_version}|{arch}\n".encode())
    if os.path.isdir(app):
        paths = [(os.path.relpath(path, app), path) for path in [lock, *source_files(app)]]
    else:
        paths = [(os.path.relpath(lock, os.path.dirname(app)), lock), (os.path.basename(app), app)]
    for name, path in paths:
        digest.update(name.encode() + b"\0")
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()[:16]


def sha256_file(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def run(module, argv, env):
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        module.fail_json(
            msg=f"{' '.join(argv[2:5])} failed", cmd=argv, stdout=proc.stdout[-4000:], stderr=proc.stderr[-4000:]
        )


def build(module, app, lock, out, python_version, arch):
    env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = [sys.executable, "-m", "pip"]
    tag = PLATFORM_TAGS[arch]
    major, minor = python_version.split(".")[:2]
    if os.path.isdir(app):
        run(module, [*pip, "wheel", "--no-deps", "--wheel-dir", out, app], env)
    else:
        shutil.copyfile(app, os.path.join(out, os.path.basename(app)))
    run(
        module,
        [
            *pip,
            "download",
            "--only-binary=:all:",
            "--dest",
            out,
            "--platform",
            f"manylinux2014_{tag}",
            "--platform",
            f"manylinux_2_17_{tag}",
            "--python-version",
            f"{major}.{minor}",
            "--implementation",
            "cp",
            "--abi",
            f"cp{major}{minor}",
            "--requirement",
            lock,
        ],
        env,
    )
    wanted = app_name(app)
    app_wheels = [f for f in os.listdir(out) if f.endswith(".whl") and is_app_wheel(f, wanted)]
    if len(app_wheels) != 1:
        module.fail_json(msg=f"expected one application wheel in {out}, found {app_wheels}")
    wheel = app_wheels[0]
    name, version = wheel.split("-")[:2]
    with open(lock) as handle:
        pins = handle.read()
    with open(os.path.join(out, "install.txt"), "w") as handle:
        handle.write(pins.rstrip("\n") + "\n")
        handle.write(f"{name}=={version} \\\n    --hash=sha256:{sha256_file(os.path.join(out, wheel))}\n")


ARCHIVE = "wheelhouse.tar"


def write_archive(directory, names):
    """One uncompressed tar of `names` (wheels are zip files already), identical for identical inputs."""
    tmp = os.path.join(directory, f".{ARCHIVE}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tar.gettarinfo(os.path.join(directory, name), arcname=name)
            info.mtime, info.mode = int(SOURCE_DATE_EPOCH), 0o644
            info.uid, info.gid, info.uname, info.gname = 0, 0, "root", "root"
            with open(os.path.join(directory, name), "rb") as handle:
                tar.addfile(info, handle)
    os.replace(tmp, os.path.join(directory, ARCHIVE))


def prune(dest, keep):
    builds = [os.path.join(dest, d) for d in os.listdir(dest) if not d.startswith(".")]
    builds.sort(key=os.path.getmtime, reverse=True)
    for old in builds[KEEP_BUILDS:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def normalize(name):
    """A distribution name as wheel file names spell it (PEP 503 and 427: lower case, runs of -_. as _)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def app_name(app):
    """The application's distribution name: from pyproject.toml, or from the wheel's file name."""
    if not os.path.isdir(app):
        return normalize(os.path.basename(app).split("-")[0])
    with open(os.path.join(app, "pyproject.toml")) as handle:
        for line in handle:
            key, _, value = line.partition("=")
            if key.strip() == "name":
                return normalize(value.strip().strip("\"'"))
    raise ValueError(f"no project name in {app}/pyproject.toml")


def is_app_wheel(filename, name):
    return normalize(filename.split("-")[0]) == name


def main():
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path"},
            "wheel": {"type": "path"},
            "lock": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "python_version": {"type": "str", "required": True},
            "arch": {"type": "str", "required": True},
        },
        mutually_exclusive=[("src", "wheel")],
        required_one_of=[("src", "wheel")],
        supports_check_mode=True,
    )
    p = module.params
    app = p["wheel"] or p["src"]
    if p["wheel"] and not (p["wheel"].endswith(".whl") and os.path.isfile(p["wheel"])):
        module.fail_json(msg=f"wheel={p['wheel']} must be an existing .whl file")
    if p["arch"] not in PLATFORM_TAGS:
        module.fail_json(msg=f"unsupported target architecture {p['arch']!r}; known: {sorted(PLATFORM_TAGS)}")
    release_id = fingerprint(app, p["lock"], p["python_version"], p["arch"])
    out = os.path.join(p["dest"], f"{release_id}-cp{p['python_version'].replace('.', '')}-{p['arch']}")
    if module.check_mode and not os.path.exists(os.path.join(out, "install.txt")):
        # A preview builds nothing on the controller: it says that a build would run.
        module.exit_json(
            changed=True,
            release_id=release_id,
            path=out,
            files=[],
            archive=os.path.join(out, ARCHIVE),
            app_version=None,
        )
    os.makedirs(p["dest"], exist_ok=True)
    changed = False
    # Hosts of one play call this in parallel: the lock makes the first build and the rest reuse.
    with open(os.path.join(p["dest"], ".lock"), "w") as lock_handle:
        fcntl.flock(lock_handle, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(out, "install.txt")):
            tmp = tempfile.mkdtemp(dir=p["dest"], prefix=".build-")
            try:
                build(module, app, p["lock"], tmp, p["python_version"], p["arch"])
                os.replace(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            changed = True
            prune(p["dest"], keep=out)
        files = sorted(f for f in os.listdir(out) if f != ARCHIVE and not f.startswith("."))
        # Wheelhouses built before the archive existed get one now.
        if not os.path.exists(os.path.join(out, ARCHIVE)) and not module.check_mode:
            write_archive(out, files)
    wanted = app_name(app)
    wheel = next(f for f in files if f.endswith(".whl") and is_app_wheel(f, wanted))
    module.exit_json(
        changed=changed,
        release_id=release_id,
        path=out,
        files=files,
        archive=os.path.join(out, ARCHIVE),
        app_version=wheel.split("-")[1],
    )


if __name__ == "__main__":
    main()
