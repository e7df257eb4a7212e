"""Per-application state shared by the views and request hooks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import current_app

from .config import Config
from .drain import DrainState
from .metrics import Metrics

EXTENSION_KEY = "lbapp"


@dataclass(frozen=True)
class AppState:
    config: Config
    metrics: Metrics
    drain: DrainState

    def uptime_seconds(self) -> float:
        started = self.config.started_at.timestamp()
        return round(max(0.0, time.time() - started), 3)

    @staticmethod
    def now() -> datetime:
        return datetime.now(timezone.utc)


def get_state() -> AppState:
    return current_app.extensions[EXTENSION_KEY]
