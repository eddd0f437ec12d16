"""Fixtures of the deploy checks."""

from __future__ import annotations

import importlib

import pytest
from prometheus_client import REGISTRY

from tests.deploy.layout import ROOT

SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",), "summary": ("_sum", "_count"), "info": ("_info",)}


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every sample name the services can export: the families of the registry once every
    module that declares metrics is imported."""
    for path in [*ROOT.glob("libs/**/*.py"), *ROOT.glob("services/**/*.py")]:
        if "prometheus_client import" in path.read_text():
            importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return {family.name + suffix for family in REGISTRY.collect()
            for suffix in SUFFIXES.get(family.type, ("",))}
