"""Which tests verify which correctness property and which requirement:
``python -m tools.properties_matrix [--check]``.

The 16 correctness properties (design seed 000) and the requirements R1–R8 (requirements
seed 001, whose "Requirement N" sections are R1–R8 here and whose acceptance criterion
"N.M" is RN.M) are listed below. A test claims one by a tag in its docstring (a test
function, a test method, or a ``Test…`` class under ``tests/``, in a ``test_*.py`` file):

* ``Property N: <title> — …`` (optionally after ``Feature: im-backend-service,``);
* ``Requirement RN: …`` or ``Requirement RN.M: …`` (one acceptance criterion), or a list
  of them: ``Requirements R2.1, R2.6, R7.1: …``.

A docstring may carry several tags. The script writes ``docs/properties.md`` (each
property and requirement → the test node ids that claim it) and exits 1
naming every property or requirement that no test claims. ``--check`` writes nothing and
exits 2 when the committed file differs from what would be generated (stale).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PROPERTIES: dict[int, str] = {
    1: "Authentication and Session Management", 2: "Concurrent Session Support",
    3: "Message Delivery Guarantees", 4: "Offline Message Handling",
    5: "Direct and Group Messaging", 6: "Custom Message Round Trip",
    7: "Message Schema Extensibility", 8: "Message Persistence Round Trip",
    9: "Cache Behavior and Consistency", 10: "Cache-First Retrieval",
    11: "Error Handling and Recovery", 12: "Graceful Degradation",
    13: "Health Check Availability", 14: "Graceful Shutdown",
    15: "Message Retry and Failure Handling", 16: "Delivery Status API",
}
REQUIREMENTS: dict[int, str] = {
    1: "User Authentication and Session Management", 2: "Real-time Message Exchange",
    3: "Custom Message Types", 4: "High Concurrency Support",
    5: "Data Persistence and Caching", 6: "High Availability and Fault Tolerance",
    7: "Message Delivery Guarantees", 8: "Performance Optimization",
}
# Seed 000's "Validates: Requirements …" lines, by requirement: shown, never counted as a test.
VALIDATED_BY: dict[int, tuple[int, ...]] = {
    1: (1, 2), 2: (3, 4, 5), 3: (6, 7), 4: (), 5: (8, 9, 10, 11), 6: (11, 12, 13, 14),
    7: (3, 15, 16), 8: (),
}
PROPERTY_TAG = re.compile(r"\bProperty (\d+):")
REQUIREMENT_TAG = re.compile(r"\bRequirements? (R\d+(?:\.\d+)?(?:, R\d+(?:\.\d+)?)*):")
REQUIREMENT_ITEM = re.compile(r"R(\d+)(?:\.(\d+))?")
OUTPUT = Path("docs/properties.md")
MISSING, STALE = 1, 2


@dataclass(frozen=True, order=True)
class Claim:
    """One test's claim on a property ("P", n) or requirement ("R", n, criterion or 0)."""

    kind: str
    number: int
    criterion: int
    node_id: str
    path: str
    line: int


def scanned_files(root: Path) -> list[Path]:
    return sorted((root / "tests").rglob("test_*.py"))


def claims_in(path: Path, root: Path) -> Iterator[Claim]:
    """Every tag in the docstrings of ``path``'s tests (SyntaxError names the file)."""
    relative = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
    for node, qualname in _tests(tree.body, ""):
        doc = ast.get_docstring(node) or ""
        node_id = f"{relative}::{qualname}"
        for match in PROPERTY_TAG.finditer(doc):
            yield Claim("P", int(match[1]), 0, node_id, relative, node.lineno)
        for tag in REQUIREMENT_TAG.finditer(doc):
            for match in REQUIREMENT_ITEM.finditer(tag[1]):
                yield Claim("R", int(match[1]), int(match[2] or 0), node_id, relative, node.lineno)


def _tests(body: Sequence[ast.stmt], prefix: str
           ) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, str]]:
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            yield node, prefix + node.name
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            yield node, prefix + node.name
            yield from _tests(node.body, f"{prefix}{node.name}::")


def collect(root: Path) -> list[Claim]:
    try:
        return sorted({claim for path in scanned_files(root) for claim in claims_in(path, root)})
    except SyntaxError as exc:
        raise SystemExit(f"cannot read the tests' docstrings: {exc.filename}:{exc.lineno}: {exc.msg}") from None


def missing(claims: Sequence[Claim]) -> list[str]:
    """"Property N" / "Requirement RN" for each one no test claims (unknown numbers too)."""
    have = {(c.kind, c.number) for c in claims}
    gaps = [f"Property {n}: {t}" for n, t in PROPERTIES.items() if ("P", n) not in have]
    gaps += [f"Requirement R{n}: {t}" for n, t in REQUIREMENTS.items() if ("R", n) not in have]
    known = {("P", n) for n in PROPERTIES} | {("R", n) for n in REQUIREMENTS}
    gaps += [f"unknown tag {_label(c)} in {c.node_id}" for c in claims if (c.kind, c.number) not in known]
    return gaps


def _label(claim: Claim) -> str:
    if claim.kind == "P":
        return f"Property {claim.number}"
    return f"Requirement R{claim.number}" + (f".{claim.criterion}" if claim.criterion else "")


def render(claims: Sequence[Claim]) -> str:
    lines = [
        "# Correctness properties and requirements → tests",
        "",
        "Generated by `python -m tools.properties_matrix` from the tests' docstrings; do not edit",
        "by hand (`python -m tools.properties_matrix --check` fails when this file is stale).",
        "",
        "A test claims a property with `Property N: <title>` in its docstring, and a requirement",
        "with `Requirement RN: …`, or acceptance criteria with `Requirement RN.M: …` or",
        "`Requirements RN.M, RK.L: …`.",
        "Properties are the 16 correctness properties of the design (seed 000); requirements",
        "R1–R8 are its requirements document's \"Requirement 1\"–\"Requirement 8\" (seed 001), and",
        "RN.M is acceptance criterion N.M there.",
        "",
        "## Properties",
        "",
        "| # | property | tests |",
        "|---|---|---|",
    ]
    lines += [f"| {n} | {title} | {_cell(claims, 'P', n)} |" for n, title in PROPERTIES.items()]
    lines += ["", "## Requirements", "",
              "| R | requirement | properties that validate it (seed 000) | tests (criteria) |",
              "|---|---|---|---|"]
    for n, title in REQUIREMENTS.items():
        via = ", ".join(str(p) for p in VALIDATED_BY[n]) or "—"
        lines.append(f"| R{n} | {title} | {via} | {_cell(claims, 'R', n)} |")
    gaps = missing(claims)
    lines += ["", "## Without a test", ""]
    lines += [f"- {gap}" for gap in gaps] or ["None: every property and requirement has a test."]
    return "\n".join(lines) + "\n"


def _cell(claims: Sequence[Claim], kind: str, number: int) -> str:
    # Node ids only, no line numbers: the matrix goes stale when a claim moves between
    # tests, not whenever a line is added above one.
    criteria: dict[str, list[int]] = {}
    for c in claims:
        if c.kind == kind and c.number == number:
            criteria.setdefault(c.node_id, []).append(c.criterion)
    if not criteria:
        return "**none**"
    return "<br>".join(f"`{node}`{_criteria(kind, number, found)}"
                       for node, found in criteria.items())


def _criteria(kind: str, number: int, found: list[int]) -> str:
    named = sorted({c for c in found if c})
    return " " + ", ".join(f"R{number}.{c}" for c in named) if kind == "R" and named else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.properties_matrix", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="fail (exit 2) if the committed file is stale")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the repository (default: this checkout)")
    args = parser.parse_args(argv)
    claims = collect(args.root)
    text, out = render(claims), args.root / OUTPUT
    status = 0
    if args.check:
        if not out.is_file() or out.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run python -m tools.properties_matrix", file=sys.stderr)
            status = STALE
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    for gap in missing(claims):
        print(f"no test: {gap}", file=sys.stderr)
    return status or (MISSING if missing(claims) else 0)


if __name__ == "__main__":
    sys.exit(main())
