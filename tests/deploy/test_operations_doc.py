"""docs/operations.md speaks of what exists: its NJ_* settings are documented ones, the
files it names are in the repository, its `natterjack` commands parse, and its metric
names are exported by the code."""

from __future__ import annotations

import re
import shlex

import pytest
from natterjack_client.cli import build_parser

from tests.deploy.layout import ROOT

pytestmark = pytest.mark.timeout(30)
GUIDE = ROOT / "docs" / "operations.md"
CONFIG_DOC = ROOT / "docs" / "configuration.md"
REPO_PATH = re.compile(r"`((?:deploy|docs|tests|libs|services|proto|tools|clients)/[\w./-]+"
                       r"|compose\.yaml|Dockerfile)`")


def test_every_setting_is_documented():
    documented = set(re.findall(r"NJ_[A-Z0-9_]+", CONFIG_DOC.read_text()))
    compose_only = set(re.findall(r"\$\{(NJ_[A-Z0-9_]+)", (ROOT / "compose.yaml").read_text()))
    used = set(re.findall(r"NJ_[A-Z0-9_]+", GUIDE.read_text()))
    assert used - documented - compose_only == set()


def test_every_named_file_exists():
    for path in REPO_PATH.findall(GUIDE.read_text()):
        assert (ROOT / path.split("#")[0]).exists(), path


def test_every_natterjack_command_parses():
    commands = re.findall(r"^natterjack (.+?)(?:\s+#.*)?$", GUIDE.read_text(), re.MULTILINE)
    assert any(c.startswith("bus tail") for c in commands)
    parser = build_parser()
    for command in commands:
        parser.parse_args(shlex.split(command))


def test_every_metric_in_backticks_is_exported(exported: set[str]):
    named = set(re.findall(r"`((?:nj_|messages_|session_store|push_notification|p99_message|"
                           r"concurrent_websocket)\w*)", GUIDE.read_text()))
    families = {name for name in named if f"{name}_bucket" in exported}  # histograms
    assert named and named - families - exported == set()
