"""X-Request-ID: accepted when well-formed, generated when absent, replaced when malformed."""

from __future__ import annotations

import re

import pytest

from lbapp import request_id

HEX32 = re.compile(r"[0-9a-f]{32}")
ALLOWED = "AZaz09._:-"


def _request_line(records):
    return [r for r in records if r["logger"] == "lbapp.request"][-1]


@pytest.mark.parametrize(
    "incoming",
    [
        "abc",
        "a",
        "0123456789abcdef0123456789abcdef",
        "req.id_with:all-" + ALLOWED,
        "x" * 128,
        "9f86d081-884c-4d63-a7c4-0e1b7d8a6f1e",
    ],
)
def test_valid_id_is_echoed(client, logs, incoming):
    logs()  # drop start-up lines
    response = client.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] == incoming
    line = _request_line(logs())
    assert line["request_id"] == incoming
    assert line["request_id_replaced"] is False


def test_missing_id_is_generated(client, logs):
    logs()
    first = client.get("/health").headers["X-Request-ID"]
    second = client.get("/health").headers["X-Request-ID"]
    assert HEX32.fullmatch(first) and HEX32.fullmatch(second)
    assert first != second
    records = [r for r in logs() if r["logger"] == "lbapp.request"]
    assert [r["request_id"] for r in records] == [first, second]
    assert all(r["request_id_replaced"] is False for r in records)


@pytest.mark.parametrize(
    "incoming",
    [
        "",
        "x" * 129,
        "has space",
        "semi;colon",
        "slash/id",
        "<script>alert(1)</script>",
        'quote"',
        "ünïcode",
        "tab\tid",
    ],
    ids=[
        "empty",
        "too-long",
        "space",
        "semicolon",
        "slash",
        "markup",
        "quote",
        "unicode",
        "tab",
    ],
)
def test_malformed_id_is_replaced_and_flagged(client, logs, incoming):
    logs()
    response = client.get("/", headers={"X-Request-ID": incoming})
    replacement = response.headers["X-Request-ID"]
    assert HEX32.fullmatch(replacement)
    html = response.get_data(as_text=True)
    assert f'<code id="request-id">{replacement}</code>' in html
    if incoming:
        assert incoming not in html
    line = _request_line(logs())
    assert line["request_id"] == replacement
    assert line["request_id_replaced"] is True


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/health", 405)])
def test_id_on_error_responses(client, path, status):
    response = client.post(path, headers={"X-Request-ID": "err-1"})
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "err-1"
    assert response.get_json()["error"]["request_id"] == "err-1"


def test_resolve_unit():
    assert request_id.resolve("ok-1") == ("ok-1", False)
    generated, replaced = request_id.resolve(None)
    assert HEX32.fullmatch(generated) and replaced is False
    replacement, replaced = request_id.resolve("bad id")
    assert HEX32.fullmatch(replacement) and replaced is True
    assert request_id.is_valid("a" * request_id.MAX_LENGTH)
    assert not request_id.is_valid("a" * (request_id.MAX_LENGTH + 1))
    assert not request_id.is_valid("abc\n")
