"""Drain flag: while the flag file exists, /health answers 503 "draining"."""

from __future__ import annotations

import os
import time
from typing import Callable


class DrainState:
    """Answers "is this backend draining?" with at most one stat() per interval."""

    def __init__(
        self,
        path: str,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.interval = interval
        self._clock = clock
        self._checked_at: float | None = None
        self._draining = False

    def is_draining(self) -> bool:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self.interval:
            # A race between threads only costs an extra stat(); no lock needed.
            self._draining = os.path.exists(self.path)
            self._checked_at = now
        return self._draining
