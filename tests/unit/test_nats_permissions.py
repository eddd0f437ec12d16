"""The NATS users of the deploy configs grant what proto/subjects.yaml `permissions` lists.

proto/subjects.yaml is the source of truth; deploy/nats/nats-server.conf (Compose) and the
config embedded in deploy/k8s/base/nats.yaml (Kubernetes) must keep up with it. Both files
are read with small line/regex readers so that the test needs no YAML or HOCON library.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUBJECTS = ROOT / "proto" / "subjects.yaml"
COMPOSE_CONF = ROOT / "deploy" / "nats" / "nats-server.conf"
K8S_NATS = ROOT / "deploy" / "k8s" / "base" / "nats.yaml"
SERVICES = ("gateway", "auth", "router", "history", "delivery-retry")
DIRECTIONS = ("publish", "subscribe")

Permissions = dict[str, dict[str, set[str]]]


def subjects_permissions(text: str) -> Permissions:
    """The `permissions:` section of subjects.yaml: service -> publish/subscribe subjects.

    Expects the layout of that file: services at indent 2 (`gateway:`), the direction at
    indent 4 (`publish:`), its subjects as `    - subject` items. A key with a value on
    its own line (`note: ...`) and its continuation lines are skipped.
    """
    lines = text.splitlines()
    start = lines.index("permissions:") + 1
    perms: Permissions = {}
    service: str | None = None
    direction: str | None = None
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break  # next top-level key: end of the section
        if m := re.fullmatch(r"  ([\w-]+):(.*)", line):
            service = m.group(1) if not m.group(2).strip() else None
            direction = None
            if service is not None:
                perms[service] = {d: set() for d in DIRECTIONS}
        elif service is None:
            continue
        elif m := re.fullmatch(r"    (\w+):(.*)", line):
            direction = m.group(1) if m.group(1) in DIRECTIONS else None
        elif direction is not None and (m := re.fullmatch(r"    - (.+)", line)):
            perms[service][direction].add(m.group(1).strip().strip("'\""))
    return perms


def conf_permissions(conf: str) -> Permissions:
    """The users of a nats-server `authorization { users: [...] }` block and their allow lists."""
    conf = "\n".join(line for line in conf.splitlines() if not line.lstrip().startswith("#"))
    perms: Permissions = {}
    chunks = re.split(r"^\s*user:\s*", conf, flags=re.MULTILINE)[1:]
    for chunk in chunks:
        user = chunk.split()[0].strip("'\"")
        perms[user] = {}
        for direction in DIRECTIONS:
            m = re.search(direction + r":\s*\{\s*allow:\s*\[(.*?)\]", chunk, flags=re.DOTALL)
            perms[user][direction] = set(re.findall(r'"([^"]+)"', m.group(1))) if m else set()
    return perms


def k8s_embedded_conf(manifest: str) -> str:
    """The `nats-server.conf: |` block scalar of the nats ConfigMap."""
    lines = manifest.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "nats-server.conf: |")
    indent = len(lines[start]) - len(lines[start].lstrip())
    body: list[str] = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return textwrap.dedent("\n".join(body))


@pytest.fixture(scope="module")
def expected() -> Permissions:
    return subjects_permissions(SUBJECTS.read_text())


@pytest.fixture(scope="module")
def compose() -> Permissions:
    return conf_permissions(COMPOSE_CONF.read_text())


@pytest.fixture(scope="module")
def k8s() -> Permissions:
    return conf_permissions(k8s_embedded_conf(K8S_NATS.read_text()))


def test_subjects_yaml_is_read(expected: Permissions) -> None:
    # Guards against a reader that silently finds nothing (the checks below would pass).
    assert set(expected) == set(SERVICES)
    for service in SERVICES:
        assert expected[service]["publish"], service
        assert "_INBOX.>" in expected[service]["subscribe"], service


def test_compose_conf_has_one_user_per_service(compose: Permissions) -> None:
    assert set(compose) == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_compose_conf_grants_subjects_yaml(expected: Permissions, compose: Permissions,
                                          service: str, direction: str) -> None:
    missing = expected[service][direction] - compose.get(service, {}).get(direction, set())
    assert not missing, f"{COMPOSE_CONF.name}: {service} {direction} lacks {sorted(missing)}"


def test_k8s_conf_matches_compose_conf(compose: Permissions, k8s: Permissions) -> None:
    assert k8s == compose
