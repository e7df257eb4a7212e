"""Ansible callback of the bench: when each task started and when each host's result came, written
as JSON to $LBI_PROFILE_OUT at the end of the run. bench/lib.py turns it into the per-role and
per-task breakdown of the report; it changes nothing of what the run prints."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: lbi_profile
type: aggregate
short_description: per-task start and per-host result times, as JSON, for the bench
description: Writes the tasks and results of a run to the file named by LBI_PROFILE_OUT.
requirements: [LBI_PROFILE_OUT set in the environment]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "lbi_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._started = time.monotonic()
        self._tasks: list[dict] = []
        self._by_uuid: dict[str, dict] = {}

    def _task_start(self, task, handler: bool) -> None:
        entry = {
            "role": task._role.get_name() if task._role else "",
            "name": task.get_name(),
            "action": task.action,
            "handler": handler,
            "start": time.monotonic() - self._started,
            "hosts": {},
        }
        self._tasks.append(entry)
        self._by_uuid[task._uuid] = entry

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task, handler=False)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task, handler=True)

    def _result(self, result, status: str) -> None:
        entry = self._by_uuid.get(result._task._uuid)
        if entry is not None:  # a looped task reports once per host, at its end
            entry["hosts"][result._host.get_name()] = [time.monotonic() - self._started, status]

    def v2_runner_on_ok(self, result):
        self._result(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get("LBI_PROFILE_OUT")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump({"end": time.monotonic() - self._started, "tasks": self._tasks}, out)
