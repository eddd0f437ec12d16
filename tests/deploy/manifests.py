"""Kubernetes manifests as Python objects: the base files, overlays rendered by
``kubectl kustomize``, schema validation (kubernetes_validate, offline), and lookups."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.layout import K8S

# The Kubernetes release whose schemas (bundled with kubernetes_validate) the manifests
# must meet: the kubectl 1.32 line, supported by every current managed offering.
K8S_VERSION = "1.32.0"
KUBECTL = "/usr/bin/kubectl"
OVERLAYS = ("dev", "prod")

Manifest = dict[str, Any]


def base_files() -> list[Path]:
    return sorted(p for p in (K8S / "base").glob("*.yaml") if p.name != "kustomization.yaml")


def load(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kubectl() -> str:
    """The kubectl binary; a clear failure (never a skip) when it is not installed."""
    found = KUBECTL if Path(KUBECTL).exists() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl is not installed: the overlays are rendered with `kubectl "
                    "kustomize` (install kubectl >= 1.27, which bundles kustomize v5)")
    return found


def render(directory: Path) -> list[Manifest]:
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True,
                            text=True, timeout=20)
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return load(result.stdout)


def schema_errors(manifests: Iterable[Manifest]) -> list[str]:
    """One line per manifest that does not meet the strict schema of K8S_VERSION."""
    errors = []
    for manifest in manifests:
        try:
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{name_of(manifest)}: {str(exc).splitlines()[0]}")
    return errors


def name_of(manifest: Manifest) -> str:
    return f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"


def find(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind
            and (name is None or m["metadata"]["name"] == name)]


def one(manifests: Iterable[Manifest], kind: str, name: str) -> Manifest:
    found = find(manifests, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels only) picks pods with ``labels``."""
    match = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())
