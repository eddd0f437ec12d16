"""delivery-retry configuration: defaults, overrides, and every bad variable named at once."""

from __future__ import annotations

import pytest

from libs.config import ConfigError
from services.delivery_retry import config


def test_defaults():
    loaded = config.load({})
    assert loaded.common.service == "delivery-retry" and loaded.common.http_port == 8094
    assert (loaded.ack_batch_ms, loaded.backoff_s, loaded.max_attempts) == (
        5.0, (1.0, 2.0, 4.0, 8.0, 16.0), 5)


def test_overrides():
    loaded = config.load({"NJ_DLV_ACK_BATCH_MS": "2", "NJ_DLV_BACKOFF_S": "0.5,1",
                          "NJ_DLV_MAX_ATTEMPTS": "3", "NJ_DELIVERY_RETRY_HTTP_PORT": "0"})
    assert (loaded.ack_batch_ms, loaded.backoff_s, loaded.max_attempts) == (2.0, (0.5, 1.0), 3)
    assert loaded.common.http_port == 0


def test_bad_values_are_all_reported():
    with pytest.raises(ConfigError) as caught:
        config.load({"NJ_DLV_ACK_BATCH_MS": "-1", "NJ_DLV_BACKOFF_S": "1,x",
                     "NJ_DLV_MAX_ATTEMPTS": "0"})
    for name in ("NJ_DLV_ACK_BATCH_MS", "NJ_DLV_BACKOFF_S", "NJ_DLV_MAX_ATTEMPTS"):
        assert name in str(caught.value)
