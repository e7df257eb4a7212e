"""Helpers for tests that start Python or gunicorn in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

import lbapp

# The directory holding the lbapp package under test (src/ for an editable install).
PACKAGE_PARENT = str(Path(lbapp.__file__).resolve().parent.parent)


def clean_env(tmp_path, **extra: str) -> dict:
    """The current environment minus LBAPP_*/PROMETHEUS_*, plus a safe base and ``extra``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LBAPP_", "PROMETHEUS_", "FLASK_", "COV_CORE_", "COVERAGE_"))
    }
    pythonpath = [PACKAGE_PARENT]
    if env.get("PYTHONPATH"):
        pythonpath.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    env["PYTHONUNBUFFERED"] = "1"
    env["LBAPP_DRAIN_FILE"] = str(tmp_path / "drain")
    env.update(extra)
    return env
