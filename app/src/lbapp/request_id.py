"""Request IDs: keep a well-formed incoming ``X-Request-ID``, otherwise make one."""

from __future__ import annotations

import re
import uuid

HEADER = "X-Request-ID"
MAX_LENGTH = 128
_VALID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")


def new_request_id() -> str:
    """32 lowercase hex digits, the same shape as NGINX's ``$request_id``."""
    return uuid.uuid4().hex


def is_valid(value: str) -> bool:
    return _VALID.fullmatch(value) is not None


def resolve(incoming: str | None) -> tuple[str, bool]:
    """Return ``(request_id, replaced)``.

    ``replaced`` is true when the client sent a malformed ID (empty, too long or
    with characters outside ``[A-Za-z0-9._:-]``); such a value is never echoed.
    """
    if incoming is None:
        return new_request_id(), False
    if is_valid(incoming):
        return incoming, False
    return new_request_id(), True
