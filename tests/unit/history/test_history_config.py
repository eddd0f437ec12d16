"""history's configuration: defaults, overrides, and every bad knob reported."""

from __future__ import annotations

import pytest

from libs.config import ConfigError
from services.history.config import load


def test_defaults() -> None:
    config = load({})
    assert config.common.service == "history" and config.common.http_port == 8093
    assert (config.batch_max, config.batch_wait_ms, config.retry_base_ms, config.retry_max_ms) == (
        100, 50, 100, 10_000)
    assert (config.batch_wait_s, config.retry_base_s, config.retry_max_s) == (0.05, 0.1, 10.0)


def test_overrides() -> None:
    config = load({"NJ_HISTORY_BATCH_MAX": "10", "NJ_HISTORY_BATCH_WAIT_MS": "5",
                   "NJ_HISTORY_RETRY_BASE_MS": "20", "NJ_HISTORY_RETRY_MAX_MS": "200",
                   "NJ_HISTORY_HTTP_PORT": "0"})
    assert (config.batch_max, config.batch_wait_ms, config.retry_base_ms, config.retry_max_ms,
            config.common.http_port) == (10, 5, 20, 200, 0)


def test_bad_values_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        load({"NJ_HISTORY_BATCH_MAX": "0", "NJ_HISTORY_BATCH_WAIT_MS": "soon",
              "NJ_HISTORY_RETRY_BASE_MS": "500", "NJ_HISTORY_RETRY_MAX_MS": "100"})
    message = str(caught.value)
    for name in ("NJ_HISTORY_BATCH_MAX", "NJ_HISTORY_BATCH_WAIT_MS", "NJ_HISTORY_RETRY_BASE_MS"):
        assert name in message
