"""proto/subjects.yaml against what the running services subscribe to, both ways.

The nats-server's monitoring port lists every connection (named after its service by
libs/bus) with its subscriptions and queue groups (``/connz?subs=detail``), and the JetStream
consumers (``/jsz``). Reply inboxes (``_INBOX.``) and JetStream API subjects are plumbing, not
catalogue entries. A catalogue placeholder (``<chat_id>``, ``<user_id>``, ``<gateway_id>``)
stands for one token: a concrete one (a gateway's own id) or the ``*`` wildcard.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import yaml

from libs import contracts
from libs.natsd import NatsServer

pytestmark = pytest.mark.e2e
SERVICES = ("auth", "router", "history", "delivery-retry", "gateway")
PLUMBING = ("_INBOX.", "$JS.")


@dataclass(frozen=True)
class Sub:
    service: str
    subject: str
    queue: str | None


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Any]:
    return yaml.safe_load((contracts.proto_dir() / "subjects.yaml").read_text())


def _monitor(nats: NatsServer, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{nats.monitor_port}{path}", timeout=5) as answer:
        return orjson.loads(answer.read())


def _live(entries: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in entries if e.get("status") != "planned" and (e["kind"] == "jetstream") == (kind == "js")]


def catalogued(catalogue: dict[str, Any]) -> set[Sub]:
    """Core subscriptions that the catalogue promises, by our services."""
    return {Sub(s["service"], entry["name"], s.get("queue_group"))
            for entry in _live(catalogue["subjects"], "core") for s in entry["subscribers"]
            if s["service"] in SERVICES}


def subscribed(nats: NatsServer) -> set[Sub]:
    """Core subscriptions of the services' connections, plumbing left out."""
    connections = _monitor(nats, "/connz?subs=detail&limit=1024")["connections"]
    return {Sub(c["name"], s["subject"], s.get("qgroup") or None)
            for c in connections if c.get("name") in SERVICES
            for s in c.get("subscriptions_list_detail", []) if not s["subject"].startswith(PLUMBING)}


def matches(pattern: str, subject: str) -> bool:
    parts = [r"(?:[A-Za-z0-9_-]+|\*)" if re.fullmatch(r"<\w+>", t) else re.escape(t)
             for t in pattern.split(".")]
    return re.fullmatch(r"\.".join(parts), subject) is not None


def covers(entry: Sub, sub: Sub) -> bool:
    return (entry.service, entry.queue) == (sub.service, sub.queue) and matches(entry.subject, sub.subject)


def test_every_subscription_is_catalogued(stack, stack_nats, catalogue) -> None:
    expected, actual = catalogued(catalogue), subscribed(stack_nats)
    assert {s.service for s in actual} == set(SERVICES), "a service's connection is missing"
    stray = [s for s in actual if not any(covers(e, s) for e in expected)]
    assert not stray, f"subscribed but not in subjects.yaml: {stray}"


def test_every_catalogued_subscription_exists(stack, stack_nats, catalogue) -> None:
    expected, actual = catalogued(catalogue), subscribed(stack_nats)
    unused = [e for e in expected if not any(covers(e, s) for s in actual)]
    assert not unused, f"in subjects.yaml but nobody subscribes: {unused}"


def test_jetstream_consumers_match_the_catalogue(stack, stack_nats, catalogue) -> None:
    jsz = _monitor(stack_nats, "/jsz?accounts=true&streams=true&consumers=true&config=true")
    consumers = {(stream["name"], c["name"]): c["config"].get("filter_subject")
                 for account in jsz["account_details"] for stream in account.get("stream_detail", [])
                 for c in stream.get("consumer_detail", [])}
    expected = {(entry["stream"], s["consumer"]) for entry in _live(catalogue["subjects"], "js")
                for s in entry["subscribers"]}
    assert set(consumers) == expected
    for (stream, name), filter_subject in consumers.items():
        assert catalogue["consumers"][name]["stream"] == stream
        assert catalogue["consumers"][name]["filter_subject"] == filter_subject
