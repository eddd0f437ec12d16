"""deploy/prometheus/alerts.yaml: a well-formed Prometheus rule file whose expressions name
only metrics the code exports (read from the real registry, not from a list), each alert
with a severity, a summary and a runbook section that exists in docs/operations.md."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.layout import ROOT

pytestmark = pytest.mark.timeout(30)
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
SEVERITIES = {"info", "warning", "critical"}
# Metrics of other exporters the rules may use: Prometheus itself and kube-state-metrics.
EXTERNAL = re.compile(r"^(up|kube_\w+)$")
PROMQL_WORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left",
                "group_right", "bool", "offset", "inf", "nan"}


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    found = []
    for group in document["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"], group.get("name")
        found += group["rules"]
    return found


def test_every_rule_is_a_complete_alert(rules: list[dict[str, Any]]):
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"Natterjack[A-Z]\w+", rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s")), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert {"summary", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert _balanced(rule["expr"]), rule["alert"]


def test_expressions_name_only_exported_metrics(rules: list[dict[str, Any]], exported: set[str]):
    assert "nj_jetstream_consumer_pending" in exported and "messages_in_total" in exported
    for rule in rules:
        unknown = {m for m in metric_names(rule["expr"]) if m not in exported
                   and not EXTERNAL.match(m)}
        assert not unknown, f"{rule['alert']}: not exported by the code: {sorted(unknown)}"


def test_every_runbook_is_a_section_of_the_operations_guide(rules: list[dict[str, Any]]):
    prose = re.sub(r"^```.*?^```", "", OPERATIONS.read_text(), flags=re.MULTILINE | re.DOTALL)
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", prose, re.MULTILINE)}
    for rule in rules:
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor in anchors, rule["alert"]


def test_metric_names_reader():
    expr = ('histogram_quantile(0.99, sum by (le, verb) (rate(nj_rpc_seconds_bucket{a="b"}[5m])))'
            ' > 1 and on (pod) up == 0 or max without (x) (other_metric) > 2e3')
    assert metric_names(expr) == {"nj_rpc_seconds_bucket", "up", "other_metric"}


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: identifiers that are not functions,
    keywords, label matchers, ranges or grouping labels."""
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expr)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def _balanced(expr: str) -> bool:
    depth = 0
    for char in re.sub(r"\"[^\"]*\"", "", expr):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")
