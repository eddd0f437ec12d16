"""deploy/k8s: every manifest and both rendered overlays meet the Kubernetes schemas (strict,
offline), and the workloads meet the operating rules: non-root pods on a read-only root
file system, /health and /ready probes, requests and limits, a PodDisruptionBudget per
workload, an autoscaler per stateless service, a 3-server NATS that fsyncs every write."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from libs.tokens import generate_private_key_pem
from tests.deploy.layout import K8S, ROOT, SERVICES, UID, Service
from tests.deploy.manifests import (
    OVERLAYS,
    Manifest,
    base_files,
    find,
    load,
    name_of,
    one,
    render,
    schema_errors,
    selects,
)

pytestmark = pytest.mark.timeout(30)
CONFIG_DOC = ROOT / "docs" / "configuration.md"
SERVICE_KINDS = {"ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                 "HorizontalPodAutoscaler"}
# Every service keeps its state in MySQL, Redis or JetStream: all five scale horizontally.
STATELESS = tuple(s.name for s in SERVICES)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {overlay: render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.mark.parametrize("path", base_files(), ids=lambda p: p.name)
def test_base_manifest_meets_the_schema(path: Path):
    manifests = load(path.read_text())
    assert manifests and schema_errors(manifests) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_meets_the_schema(rendered: dict[str, list[Manifest]], overlay: str):
    assert schema_errors(rendered[overlay]) == []
    assert {m["metadata"].get("namespace") for m in rendered[overlay]
            if m["kind"] != "Namespace"} == {"natterjack"}


def test_schema_check_catches_an_unknown_field():
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "lables": {}}}
    assert schema_errors([bad]) != []


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_file_holds_its_objects(service: Service):
    manifests = load((K8S / "base" / f"{service.name}.yaml").read_text())
    assert {m["kind"] for m in manifests} == SERVICE_KINDS
    assert all(m["metadata"]["name"] == f"{service.name}" or m["kind"] == "ConfigMap"
               for m in manifests)
    one(manifests, "ConfigMap", f"{service.name}-config")


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_deployment(rendered: dict[str, list[Manifest]], overlay: str, service: Service):
    manifests = rendered[overlay]
    pod = one(manifests, "Deployment", service.name)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == service.name
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == UID
    [container] = pod["containers"]
    assert container["image"].split(":")[0].rsplit("/", 1)[-1] in (service.image, service.name)
    assert container["command"] == service.command
    assert [p["containerPort"] for p in container["ports"]] == list(service.ports)
    _hardened(container)
    _probes(container)
    _resources(container)
    refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
    assert refs == ["natterjack-config", f"{service.name}-config"]
    for name in refs:
        one(manifests, "ConfigMap", name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_a_disruption_budget(rendered: dict[str, list[Manifest]],
                                                overlay: str):
    manifests = rendered[overlay]
    budgets = find(manifests, "PodDisruptionBudget")
    workloads = find(manifests, "Deployment") + find(manifests, "StatefulSet")
    assert len(workloads) == len(SERVICES) + 1
    for workload in workloads:
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(matching) == 1, f"{name_of(workload)}: {len(matching)} budgets"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_stateless_service_has_an_autoscaler(rendered: dict[str, list[Manifest]],
                                                   overlay: str):
    manifests = rendered[overlay]
    for name in STATELESS:
        hpa = one(manifests, "HorizontalPodAutoscaler", name)["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": name}
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
        # The autoscaler owns the count: a replicas field would reset it on every apply.
        assert "replicas" not in one(manifests, "Deployment", name)["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_is_three_servers_that_fsync_every_write(rendered: dict[str, list[Manifest]],
                                                      overlay: str):
    manifests = rendered[overlay]
    nats = one(manifests, "StatefulSet", "nats")["spec"]
    assert nats["replicas"] == 3
    assert nats["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = one(manifests, "ConfigMap", "nats-config")["data"]["nats-server.conf"]
    jetstream = re.search(r"jetstream \{(.*?)\n\s*\}", conf, re.DOTALL)
    assert jetstream and re.search(r"^\s*sync_interval:\s*always\s*$", jetstream.group(1),
                                   re.MULTILINE)
    routes = re.findall(r"nats://nats-(\d)\.nats-headless:6222", conf)
    assert sorted(routes) == ["0", "1", "2"]
    [container] = nats["template"]["spec"]["containers"]
    _hardened(container)
    _resources(container)
    assert nats["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_prod_runs_r3_streams_on_a_fixed_nats(rendered: dict[str, list[Manifest]]):
    prod = rendered["prod"]
    assert one(prod, "ConfigMap", "natterjack-config")["data"]["NJ_STREAM_REPLICAS"] == "3"
    [container] = one(prod, "StatefulSet", "nats")["spec"]["template"]["spec"]["containers"]
    version = re.match(r"nats:(\d+)\.(\d+)\.(\d+)", container["image"])
    assert version, f"prod must pin an exact nats version, got {container['image']}"
    assert tuple(int(v) for v in version.groups()) >= (2, 12, 3)
    spread = one(prod, "StatefulSet", "nats")["spec"]["template"]["spec"]
    assert spread["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "DoNotSchedule"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_nj_variable_is_documented(rendered: dict[str, list[Manifest]], overlay: str):
    documented = set(re.findall(r"NJ_[A-Z0-9_]+", CONFIG_DOC.read_text()))
    used = {key for cm in find(rendered[overlay], "ConfigMap") for key in cm.get("data", {})
            if key.startswith("NJ_")}
    used |= {env["name"] for d in find(rendered[overlay], "Deployment")
             for env in d["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert used and used <= documented, used - documented


def _hardened(container: dict[str, Any]) -> None:
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]


def _probes(container: dict[str, Any]) -> None:
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
    assert container["ports"][0]["name"] == "http"


def _resources(container: dict[str, Any]) -> None:
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}, bound


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_each_service_accepts_its_rendered_settings(rendered: dict[str, list[Manifest]],
                                                    overlay: str, service: Service,
                                                    tmp_path: Path):
    """The service's own config loader (fail fast on a bad value) takes the environment its
    pod gets: both ConfigMaps, then the container's env (secrets as placeholders)."""
    manifests = rendered[overlay]
    [container] = one(manifests, "Deployment", service.name)["spec"]["template"]["spec"][
        "containers"]
    env = {key: value for ref in container["envFrom"]
           for key, value in one(manifests, "ConfigMap", ref["configMapRef"]["name"])["data"].items()}
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif not entry["valueFrom"].get("secretKeyRef", {}).get("optional"):
            env[entry["name"]] = "secret-placeholder"
    env["NJ_PROTO_DIR"] = str(ROOT / "proto")  # /app/proto in the image
    if "NJ_AUTH_SIGNING_KEY_FILE" in env:  # mounted from a Secret in the pod
        key = tmp_path / "auth-ed25519.pem"
        key.write_text(generate_private_key_pem())
        env["NJ_AUTH_SIGNING_KEY_FILE"] = str(key)
    config = importlib.import_module(f"services.{service.module}.config").load(env)
    assert config.common.http_port == service.ports[0]
    assert config.common.nats_user == service.name
