"""Configuration parsing and validation, one variable at a time."""

from __future__ import annotations

import dataclasses
import socket
from datetime import datetime, timezone

import pytest

import lbapp
from lbapp.config import (
    DEFAULT_DRAIN_FILE,
    Config,
    ConfigError,
    format_timestamp,
    load_config,
    parse_timestamp,
)


def test_defaults_from_empty_environment():
    cfg = load_config({})
    assert cfg.display_name == socket.gethostname()
    assert cfg.hostname == socket.gethostname()
    assert cfg.version == lbapp.__version__ == "1.0.0"
    assert cfg.drain_file == DEFAULT_DRAIN_FILE == "/run/lbapp/drain"
    assert cfg.proxy_hops == 1
    assert cfg.log_level == "INFO"
    assert cfg.multiproc_dir is None
    assert cfg.multiprocess is False
    assert cfg.started_at.tzinfo is not None
    assert cfg.drain_check_interval == 1.0


def test_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("LBAPP_DISPLAY_NAME", "from-os-environ")
    assert load_config().display_name == "from-os-environ"


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config({}).display_name = "x"  # type: ignore[misc]


# ----- good values -------------------------------------------------------------

GOOD = [
    ("LBAPP_DISPLAY_NAME", "Web 1", "display_name", "Web 1"),
    ("LBAPP_DISPLAY_NAME", "x", "display_name", "x"),
    ("LBAPP_DISPLAY_NAME", "n" * 100, "display_name", "n" * 100),
    ("LBAPP_DISPLAY_NAME", "Überserver ☃ <b>", "display_name", "Überserver ☃ <b>"),
    ("LBAPP_VERSION", "2.0.1", "version", "2.0.1"),
    ("LBAPP_VERSION", "v1.2.3-rc.1+build_7", "version", "v1.2.3-rc.1+build_7"),
    ("LBAPP_VERSION", "a" * 64, "version", "a" * 64),
    ("LBAPP_DRAIN_FILE", "/var/lib/lbapp/drain", "drain_file", "/var/lib/lbapp/drain"),
    ("LBAPP_PROXY_HOPS", "0", "proxy_hops", 0),
    ("LBAPP_PROXY_HOPS", "5", "proxy_hops", 5),
    ("LBAPP_PROXY_HOPS", " 2 ", "proxy_hops", 2),
    ("LBAPP_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ("LBAPP_LOG_LEVEL", "warning", "log_level", "WARNING"),
    ("LBAPP_LOG_LEVEL", "ERROR", "log_level", "ERROR"),
]


@pytest.mark.parametrize(("variable", "value", "attr", "expected"), GOOD)
def test_good_values(variable, value, attr, expected):
    assert getattr(load_config({variable: value}), attr) == expected


def test_multiproc_dir(tmp_path):
    cfg = load_config({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert cfg.multiproc_dir == str(tmp_path)
    assert cfg.multiprocess is True


def test_empty_multiproc_dir_means_single_process():
    assert load_config({"PROMETHEUS_MULTIPROC_DIR": ""}).multiproc_dir is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
        ("2026-01-02T03:04:05.250+00:00", datetime(2026, 1, 2, 3, 4, 5, 250000, timezone.utc)),
        ("2026-01-02T05:04:05+02:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)),
    ],
)
def test_started_at(value, expected):
    assert load_config({"LBAPP_STARTED_AT": value}).started_at == expected


def test_timestamp_round_trip():
    stamp = datetime(2026, 5, 6, 7, 8, 9, 123456, timezone.utc)
    text = format_timestamp(stamp)
    assert text == "2026-05-06T07:08:09.123Z"
    assert parse_timestamp("X", text) == stamp.replace(microsecond=123000)


# ----- bad values --------------------------------------------------------------

BAD = [
    ("LBAPP_DISPLAY_NAME", ""),
    ("LBAPP_DISPLAY_NAME", "n" * 101),
    ("LBAPP_DISPLAY_NAME", "bad\nname"),
    ("LBAPP_DISPLAY_NAME", "tab\there"),
    ("LBAPP_DISPLAY_NAME", "bell\x07"),
    ("LBAPP_VERSION", ""),
    ("LBAPP_VERSION", "1.0 beta"),
    ("LBAPP_VERSION", "v1/2"),
    ("LBAPP_VERSION", "a" * 65),
    ("LBAPP_VERSION", "1.0;rm"),
    ("LBAPP_DRAIN_FILE", ""),
    ("LBAPP_DRAIN_FILE", "relative/drain"),
    ("LBAPP_DRAIN_FILE", "/run/lbapp/"),
    ("LBAPP_DRAIN_FILE", "/run/lb\napp"),
    ("LBAPP_PROXY_HOPS", ""),
    ("LBAPP_PROXY_HOPS", "6"),
    ("LBAPP_PROXY_HOPS", "-1"),
    ("LBAPP_PROXY_HOPS", "+1"),
    ("LBAPP_PROXY_HOPS", "1_0"),
    ("LBAPP_PROXY_HOPS", "one"),
    ("LBAPP_PROXY_HOPS", "1.5"),
    ("LBAPP_PROXY_HOPS", "\u0663"),  # ARABIC-INDIC DIGIT THREE: int() would take it
    ("LBAPP_LOG_LEVEL", ""),
    ("LBAPP_LOG_LEVEL", "TRACE"),
    ("LBAPP_LOG_LEVEL", "CRITICAL"),
    ("LBAPP_LOG_LEVEL", "10"),
    ("LBAPP_STARTED_AT", "yesterday"),
    ("LBAPP_STARTED_AT", "2026-01-02T03:04:05"),
    ("LBAPP_STARTED_AT", ""),
]


@pytest.mark.parametrize(("variable", "value"), BAD)
def test_bad_values_name_variable_and_value(variable, value):
    with pytest.raises(ConfigError) as info:
        load_config({variable: value})
    message = str(info.value)
    assert message.startswith(variable + "=")
    assert repr(value[:80]) in message
    assert "\n" not in message
    assert info.value.variable == variable
    assert info.value.value == value


def test_long_bad_value_is_truncated_in_message():
    with pytest.raises(ConfigError) as info:
        load_config({"LBAPP_DISPLAY_NAME": "z" * 5000})
    assert len(str(info.value)) < 250
    assert "(5000 chars)" in str(info.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_multiproc_dir_must_exist(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        load_config({"PROMETHEUS_MULTIPROC_DIR": str(missing)})
    assert "PROMETHEUS_MULTIPROC_DIR" in str(info.value)
    assert str(missing) in str(info.value)


def test_config_has_no_server_name_field():
    assert "server_name" not in {f.name for f in dataclasses.fields(Config)}
