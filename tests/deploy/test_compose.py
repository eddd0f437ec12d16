"""compose.yaml: valid against the Compose specification (its JSON Schema as shipped with
check-jsonschema, no network), and the stack it describes: JetStream on a file store that
fsyncs every write, Redis that never evicts, and the five services on their own images with
health checks and start order."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.tokens import generate_private_key_pem
from tests.deploy.layout import COMPOSE, ROOT, SERVICES, Service

pytestmark = pytest.mark.timeout(30)
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
CONFIG_DOC = ROOT / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_valid_against_the_compose_spec_offline():
    # --builtin-schema uses the schema vendored in the package: nothing is downloaded.
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=25)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_would_catch_a_wrong_file(tmp_path: Path):
    wrong = tmp_path / "compose.yaml"
    wrong.write_text("services:\n  x:\n    image: a\n    imagee: b\n")
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(wrong)],
        capture_output=True, text=True, timeout=25)
    assert result.returncode == 1 and "imagee" in result.stdout


def test_nats_runs_jetstream_on_a_file_store_fsyncing_every_write(compose: dict[str, Any]):
    nats = compose["services"]["nats"]
    command = nats["command"]
    conf_path = command[command.index("-c") + 1]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in nats["volumes"]}
    conf = (ROOT / mounts[conf_path]).read_text()
    jetstream = re.search(r"^jetstream \{(.*?)^\}", conf, re.DOTALL | re.MULTILINE)
    assert jetstream, "no jetstream block"
    settings = dict(re.findall(r"^\s*(\w+):\s*(\S+)", jetstream.group(1), re.MULTILINE))
    assert settings["sync_interval"] == "always"
    assert mounts[settings["store_dir"]] == "nats-data", "the store must be on the volume"
    assert "healthz" in " ".join(nats["healthcheck"]["test"])


def test_redis_never_evicts_and_persists(compose: dict[str, Any]):
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert compose["services"]["redis"]["healthcheck"]


def test_mariadb_has_a_health_check_and_a_volume(compose: dict[str, Any]):
    mariadb = compose["services"]["mariadb"]
    assert mariadb["healthcheck"]["test"] and any("/var/lib/mysql" in v for v in mariadb["volumes"])


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service(compose: dict[str, Any], service: Service):
    spec = compose["services"][service.name]
    assert spec["image"].split(":")[0] == service.image
    assert ROOT / spec["build"]["dockerfile"] == service.dockerfile
    assert spec["build"]["additional_contexts"] == {"natterjack-base": "service:auth-keygen"}
    assert spec["command"] == service.command
    probe = " ".join(spec["healthcheck"]["test"])
    assert f"127.0.0.1:{service.ports[0]}/ready" in probe
    waits_for = spec["depends_on"]
    assert waits_for["nats"]["condition"] == "service_healthy"
    assert all(dep["condition"].startswith("service_") for dep in waits_for.values())
    assert spec["read_only"] is True and spec["cap_drop"] == ["ALL"]


def test_the_base_image_is_built_by_the_one_shot_keygen(compose: dict[str, Any]):
    keygen = compose["services"]["auth-keygen"]
    assert keygen["build"]["dockerfile"] == "Dockerfile" and keygen["restart"] == "no"
    assert keygen["image"].startswith("natterjack-base:")


def test_every_nj_variable_is_documented(compose: dict[str, Any]):
    documented = set(re.findall(r"NJ_[A-Z0-9_]+", CONFIG_DOC.read_text()))
    used = {name for spec in compose["services"].values()
            for name in (spec.get("environment") or {}) if name.startswith("NJ_")}
    assert used and used <= documented, used - documented


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_accepts_its_compose_settings(compose: dict[str, Any], service: Service,
                                                   tmp_path: Path):
    """The service's own config loader (fail fast on a bad value) takes its environment
    with Compose's ${VAR:-default} filled in with the defaults."""
    env = {name: _interpolate(str(value))
           for name, value in compose["services"][service.name]["environment"].items()}
    env["NJ_PROTO_DIR"] = str(ROOT / "proto")  # /app/proto in the image
    if "NJ_AUTH_SIGNING_KEY_FILE" in env:  # the auth-keys volume in the container
        key = tmp_path / "auth-ed25519.pem"
        key.write_text(generate_private_key_pem())
        env["NJ_AUTH_SIGNING_KEY_FILE"] = str(key)
    config = importlib.import_module(f"services.{service.module}.config").load(env)
    assert config.common.http_port == service.ports[0]
    assert config.common.nats_user == service.name


def _interpolate(value: str) -> str:
    return re.sub(r"\$\{\w+:-([^}]*)\}", lambda m: m.group(1), value)
