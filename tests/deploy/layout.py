"""What the deploy files describe: the services, their modules, ports and Dockerfiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.deploy.dockerfile import Dockerfile, parse

ROOT = Path(__file__).resolve().parents[2]
BASE_DOCKERFILE = ROOT / "Dockerfile"
DOCKER_DIR = ROOT / "deploy" / "docker"
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "compose.yaml"
UID = "10001"


@dataclass(frozen=True)
class Service:
    name: str  # as in compose.yaml, the k8s objects and the image: delivery-retry
    module: str  # the Python package under services/: delivery_retry
    ports: tuple[int, ...]  # HTTP first (/health, /ready, /metrics)

    @property
    def dockerfile(self) -> Path:
        return DOCKER_DIR / f"{self.name}.Dockerfile"

    @property
    def image(self) -> str:
        return f"natterjack-{self.name}"

    @property
    def command(self) -> list[str]:
        return ["python", "-m", f"services.{self.module}"]

    def parsed(self) -> Dockerfile:
        return parse(self.dockerfile.read_text())


SERVICES = (
    Service("auth", "auth", (8091,)),
    Service("router", "router", (8092,)),
    Service("history", "history", (8093,)),
    Service("delivery-retry", "delivery_retry", (8094,)),
    Service("gateway", "gateway", (8080, 8081)),
)


def service_modules() -> set[str]:
    """Every runnable package under services/ (one with a __main__.py)."""
    return {p.parent.name for p in (ROOT / "services").glob("*/__main__.py")}
