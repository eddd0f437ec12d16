"""The images, checked on their Dockerfiles (no container engine is needed): one Dockerfile
per service built FROM the shared base, slim Python 3.11, non-root, no downloads by ADD,
the right command, and nothing copied that the service does not run."""

from __future__ import annotations

import re

import pytest

from tests.deploy.dockerfile import DockerfileError, Instruction, copy_sources, parse
from tests.deploy.layout import BASE_DOCKERFILE, ROOT, SERVICES, UID, Service, service_modules

pytestmark = pytest.mark.timeout(30)
URL = re.compile(r"^[a-z][a-z0-9+.-]*://|^git@", re.IGNORECASE)
BASE_IMAGE = "natterjack-base"


def test_every_runnable_service_has_its_dockerfile():
    assert {s.module for s in SERVICES} == service_modules()
    for service in SERVICES:
        assert service.dockerfile.is_file(), service.dockerfile


def test_the_base_is_slim_python_311_non_root_and_holds_no_service():
    base = parse(BASE_DOCKERFILE.read_text())
    for stage in base.stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base.resolve(stage.base)), stage.base
    assert _final_user(base.final.instructions) == f"{UID}:{UID}"
    sources = {s for i in _context_copies(base.final.instructions + base.stages[0].instructions)
               for s in copy_sources(i)}
    assert sources == {"pyproject.toml", "libs/", "proto/"}
    _no_downloads(base.final.instructions + base.stages[0].instructions)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_image(service: Service):
    dockerfile = service.parsed()
    final = dockerfile.final
    assert all(dockerfile.resolve(s.base) == BASE_IMAGE for s in dockerfile.stages)
    assert _final_user(final.instructions) == f"{UID}:{UID}"
    cmd = final.last("CMD")
    assert cmd is not None and cmd.exec_form() == service.command
    expose = final.last("EXPOSE")
    assert expose is not None and tuple(int(p) for p in expose.words()) == service.ports
    stopsignal = final.last("STOPSIGNAL")
    assert stopsignal is not None and stopsignal.args == "SIGTERM"
    # Kubernetes probes /health and /ready; an image HEALTHCHECK would only duplicate them.
    assert not any(s.all("HEALTHCHECK") for s in dockerfile.stages)
    assert final.all("ENTRYPOINT") == []


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_image_copies_only_its_own_package(service: Service):
    dockerfile = service.parsed()
    every = [i for stage in dockerfile.stages for i in stage.instructions]
    sources = [s for i in _context_copies(every) for s in copy_sources(i)]
    assert sorted(sources) == sorted(["services/__init__.py", f"services/{service.module}/"])
    for source in sources:
        assert (ROOT / source).exists(), source
    _no_downloads(every)
    # The runtime stage takes the service from the build stage, nothing from the context.
    assert [copy_sources(i) for i in dockerfile.final.all("COPY")] == [["/app/services"]]


def test_reader_rejects_what_is_not_a_dockerfile():
    with pytest.raises(DockerfileError, match="only ARG"):
        parse("RUN true\nFROM python:3.11-slim\n")
    with pytest.raises(DockerfileError, match="unknown instruction"):
        parse("FROM python:3.11-slim\nCOPPY a b\n")
    with pytest.raises(DockerfileError, match="continuation"):
        parse("FROM python:3.11-slim\nRUN true \\\n")
    parsed = parse("ARG X=1\nFROM a:${X} AS b\n# note\nRUN one \\\n  # inside\n  two\n")
    assert parsed.resolve(parsed.final.base) == "a:1"
    assert parsed.final.instructions[0].args == "one two"


def _final_user(instructions: list[Instruction]) -> str:
    users = [i.args for i in instructions if i.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    return users[-1]


def _context_copies(instructions: list[Instruction]) -> list[Instruction]:
    """COPY/ADD from the build context (not --from another stage)."""
    return [i for i in instructions if i.keyword in ("COPY", "ADD")
            and not any(w.startswith("--from=") for w in i.words())]


def _no_downloads(instructions: list[Instruction]) -> None:
    for add in (i for i in instructions if i.keyword == "ADD"):
        assert not any(URL.match(s) for s in copy_sources(add)), f"ADD of a URL: {add.args}"
    for copy in _context_copies(instructions):
        assert all(s not in (".", "./", "*") for s in copy_sources(copy)), copy.args
