"""The layering rules, checked on the source: libs never import services, and a service
never imports another service (services talk only over the bus)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = "<above the repository root>"
DYNAMIC_IMPORTERS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Import:
    line: int
    module: str  # absolute; `from a import b` gives a.b since b may be a module
    relative: bool

    @property
    def parts(self) -> list[str]:
        return self.module.split(".")


def imports_in(source: str, package: list[str]) -> Iterator[Import]:
    """Every import in ``source``; relative ones resolved against the dotted ``package``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (Import(node.lineno, alias.name, False) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield from _from_import(node, package)
        elif isinstance(node, ast.Call) and (target := _dynamic_target(node)):
            yield Import(node.lineno, target, False)


def _from_import(node: ast.ImportFrom, package: list[str]) -> Iterator[Import]:
    relative = node.level > 0
    if node.level - 1 > len(package):
        yield Import(node.lineno, OUTSIDE, True)
        return
    base = package[:len(package) - (node.level - 1)] if relative else []
    base = base + [part for part in (node.module or "").split(".") if part]
    for alias in node.names:
        names = base if alias.name == "*" else [*base, alias.name]
        yield Import(node.lineno, ".".join(names), relative)


def _dynamic_target(node: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``__import__("x")`` with a literal name."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = node.args[0] if node.args else None
    if name in DYNAMIC_IMPORTERS and isinstance(first, ast.Constant) \
            and isinstance(first.value, str):
        return first.value
    return None


def file_imports(root: Path, path: Path) -> list[Import]:
    return list(imports_in(path.read_text(), list(path.relative_to(root).parent.parts)))


def lib_violations(root: Path, path: Path) -> list[str]:
    """libs/ imports no services, and its relative imports stay inside libs/."""
    rel = path.relative_to(root)
    return [f"{rel}:{imp.line} imports {imp.module}" for imp in file_imports(root, path)
            if imp.parts[0] in ("services", OUTSIDE) or (imp.relative and imp.parts[0] != "libs")]


def service_violations(root: Path, path: Path) -> list[str]:
    """services/<a>/ imports no services.<b> for another service b."""
    own = path.relative_to(root / "services").parts[0]
    rel = path.relative_to(root)
    return [f"{rel}:{imp.line} imports {imp.module}" for imp in file_imports(root, path)
            if imp.module == OUTSIDE
            or (imp.parts[0] == "services" and len(imp.parts) > 1 and imp.parts[1] != own)]


def python_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


def service_files(root: Path) -> list[Path]:
    """Files inside a service package (services/__init__.py belongs to none)."""
    services = root / "services"
    return [p for p in python_files(services) if len(p.relative_to(services).parts) > 1]


def test_libs_never_import_services() -> None:
    files = python_files(ROOT / "libs")
    assert files, "no files under libs/"
    violations = [v for path in files for v in lib_violations(ROOT, path)]
    assert violations == [], "libs/ must not depend on services/:\n" + "\n".join(violations)


def test_services_do_not_import_each_other() -> None:
    violations = [v for path in service_files(ROOT) for v in service_violations(ROOT, path)]
    assert violations == [], "services talk only over the bus:\n" + "\n".join(violations)


# ---- the checker itself ---------------------------------------------------------------

@pytest.mark.parametrize(("source", "package", "expected"), [
    ("import services.router", ["libs"], "services.router"),
    ("from services import router", ["libs"], "services.router"),
    ("from services.router.domain import x", ["libs"], "services.router.domain.x"),
    ("from .. import services", ["libs"], "services"),
    ("from ..services import router", ["libs"], "services.router"),
    ("from ...services import router", ["libs", "bus"], "services.router"),
    ("from ... import x", ["libs"], OUTSIDE),
    ("from .bus import open_bus", ["libs"], "libs.bus.open_bus"),
    ("from . import log", ["libs", "bus"], "libs.bus.log"),
    ("from .events import *", ["libs"], "libs.events"),
    ("importlib.import_module('services.auth')", ["libs"], "services.auth"),
    ("__import__('services.auth')", ["libs"], "services.auth"),
    ("from ..gateway import app", ["services", "router"], "services.gateway.app"),
    ("from .storage import Storage", ["services", "router"], "services.router.storage.Storage"),
])
def test_imports_are_resolved(source: str, package: list[str], expected: str) -> None:
    assert [imp.module for imp in imports_in(source, package)] == [expected]


def test_a_lib_importing_services_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "libs" / "bus" / "thing.py"
    path.parent.mkdir(parents=True)
    path.write_text("from . import log\nfrom ..db import Database\nimport services.auth\n"
                    "from ... import services\nfrom ... import tools\nfrom .... import x\n")
    assert lib_violations(tmp_path, path) == [
        "libs/bus/thing.py:3 imports services.auth",
        "libs/bus/thing.py:4 imports services",
        "libs/bus/thing.py:5 imports tools",
        f"libs/bus/thing.py:6 imports {OUTSIDE}",
    ]


def test_a_service_importing_another_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "services" / "router" / "handlers.py"
    path.parent.mkdir(parents=True)
    path.write_text("from services.gateway import app\nfrom services.router import domain\n"
                    "from ..history import storage\nfrom . import storage as own\n"
                    "from libs import rpc\n")
    assert service_violations(tmp_path, path) == [
        "services/router/handlers.py:1 imports services.gateway.app",
        "services/router/handlers.py:3 imports services.history.storage",
    ]
