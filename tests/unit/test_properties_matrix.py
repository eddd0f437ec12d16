"""tools/properties_matrix.py: tags found in test docstrings, the matrix it writes, what it
calls missing, --check on a stale file; and the real repository's matrix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tools import properties_matrix as matrix

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[2]


def write(root: Path, relative: str, source: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")


def claiming_everything(extra: str = "") -> str:
    """A test file whose one test claims every property and requirement (and ``extra``)."""
    lines = [f"Property {n}: {title}" for n, title in matrix.PROPERTIES.items()]
    lines += [f"Requirement R{n}: {title}" for n, title in matrix.REQUIREMENTS.items()]
    body = "\n    ".join([*lines, extra])
    return f'def test_all():\n    """{body}"""\n'


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path, "tests/property/test_a.py", '''
        """Property 1: not a test docstring (module)."""

        def helper():
            """Property 2: not a test either."""

        def test_one():
            """Feature: im-backend-service, Property 3: Message Delivery Guarantees — sent.
            Requirement R7.1: at least once. Requirement R2: real time."""

        async def test_two():
            """Property 3: again, and Property 16: Delivery Status API."""

        class TestGroup:
            """Requirement R5: the class claims it."""

            def test_inner(self):
                """Requirements R7.3, R6.1, R6: a list."""
        ''')
    write(tmp_path, "tests/unit/test_b.py", '''
        def test_plain():
            """No tag here: Property without a number."""
        ''')
    write(tmp_path, "tests/unit/helpers.py", '''
        def test_not_scanned():
            """Property 4: helpers.py is not a test file."""
        ''')
    return tmp_path


def test_tags_come_from_test_functions_methods_and_test_classes_only(tree: Path) -> None:
    found = {(c.kind, c.number, c.criterion, c.node_id, c.line) for c in matrix.collect(tree)}
    assert found == {
        ("P", 3, 0, "tests/property/test_a.py::test_one", 7),
        ("R", 7, 1, "tests/property/test_a.py::test_one", 7),
        ("R", 2, 0, "tests/property/test_a.py::test_one", 7),
        ("P", 3, 0, "tests/property/test_a.py::test_two", 11),
        ("P", 16, 0, "tests/property/test_a.py::test_two", 11),
        ("R", 5, 0, "tests/property/test_a.py::TestGroup", 14),
        ("R", 7, 3, "tests/property/test_a.py::TestGroup::test_inner", 17),
        ("R", 6, 1, "tests/property/test_a.py::TestGroup::test_inner", 17),
        ("R", 6, 0, "tests/property/test_a.py::TestGroup::test_inner", 17),
    }


def test_missing_names_every_property_and_requirement_without_a_test(tree: Path) -> None:
    gaps = matrix.missing(matrix.collect(tree))
    assert "Property 3: Message Delivery Guarantees" not in gaps
    assert "Property 16: Delivery Status API" not in gaps
    assert "Property 1: Authentication and Session Management" in gaps  # module docstrings do not count
    assert "Property 4: Offline Message Handling" in gaps  # nor files other than test_*.py
    expected = {f"Property {n}: {t}" for n, t in matrix.PROPERTIES.items() if n not in (3, 16)}
    expected |= {f"Requirement R{n}: {t}" for n, t in matrix.REQUIREMENTS.items() if n not in (2, 5, 6, 7)}
    assert set(gaps) == expected


def test_unknown_numbers_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "tests/test_c.py", claiming_everything(
        "Property 17: no such property. Requirement R9.1: no such requirement."))
    assert matrix.missing(matrix.collect(tmp_path)) == [
        "unknown tag Property 17 in tests/test_c.py::test_all",
        "unknown tag Requirement R9.1 in tests/test_c.py::test_all"]


def test_writes_the_matrix_and_exits_1_naming_what_is_missing(tree: Path, capsys) -> None:
    assert matrix.main(["--root", str(tree)]) == matrix.MISSING
    text = (tree / "docs/properties.md").read_text(encoding="utf-8")
    assert ("| 3 | Message Delivery Guarantees | `tests/property/test_a.py::test_one`"
            "<br>`tests/property/test_a.py::test_two` |") in text
    assert "| 4 | Offline Message Handling | **none** |" in text
    assert ("| R7 | Message Delivery Guarantees | 3, 15, 16 | `tests/property/test_a.py::test_one`"
            " R7.1<br>`tests/property/test_a.py::TestGroup::test_inner` R7.3 |") in text
    assert "- Property 4: Offline Message Handling\n" in text
    assert "no test: Requirement R8: Performance Optimization" in capsys.readouterr().err


def test_everything_claimed_exits_0_and_check_passes_until_a_claim_moves(tmp_path: Path) -> None:
    write(tmp_path, "tests/test_c.py", claiming_everything())
    assert matrix.main(["--root", str(tmp_path)]) == 0
    assert "None: every property and requirement has a test." in (
        tmp_path / "docs/properties.md").read_text(encoding="utf-8")
    assert matrix.main(["--root", str(tmp_path), "--check"]) == 0
    source = (tmp_path / "tests/test_c.py").read_text(encoding="utf-8")
    (tmp_path / "tests/test_c.py").write_text("\n" + source, encoding="utf-8")  # lines move: still current
    assert matrix.main(["--root", str(tmp_path), "--check"]) == 0
    (tmp_path / "tests/test_d.py").write_text(source, encoding="utf-8")  # a new claim: stale
    assert matrix.main(["--root", str(tmp_path), "--check"]) == matrix.STALE


def test_check_without_a_committed_file_is_stale_and_writes_nothing(tree: Path) -> None:
    assert matrix.main(["--root", str(tree), "--check"]) == matrix.STALE
    assert not (tree / "docs/properties.md").exists()


def test_a_test_file_that_does_not_parse_is_named(tmp_path: Path) -> None:
    write(tmp_path, "tests/test_broken.py", "def test_x(:\n")
    with pytest.raises(SystemExit, match="tests/test_broken.py:1"):
        matrix.collect(tmp_path)


def test_the_repository_matrix_is_complete_and_current() -> None:
    """Every property 1–16 and requirement R1–R8 has a test that claims it, and
    docs/properties.md is what the script generates (python -m tools.properties_matrix)."""
    claims = matrix.collect(REPO)
    gaps = matrix.missing(claims)
    assert not gaps, "no test claims:\n  " + "\n  ".join(gaps)
    committed = (REPO / matrix.OUTPUT).read_text(encoding="utf-8")
    assert committed == matrix.render(claims), "docs/properties.md is stale: run python -m tools.properties_matrix"
