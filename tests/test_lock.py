"""requirements/lock.txt and pyproject.toml agree: every declared dependency, extras included,
is pinned in the lock at a version inside its declared range."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
LOCK_INPUTS = REPO / "requirements" / "lock.in"


def read_lock(path: Path) -> dict[str, list[tuple[Version, str]]]:
    """name -> [(version, marker text)]: a universal lock pins a package once per fork."""
    pins: dict[str, list[tuple[Version, str]]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        [spec] = requirement.specifier  # a lock line pins: name==version [; marker]
        assert spec.operator == "==", f"{path.name}: {line!r} is not a pin"
        pins.setdefault(canonicalize_name(requirement.name), []).append(
            (Version(spec.version), str(requirement.marker or "")))
    return pins


def declared() -> list[tuple[str, Requirement]]:
    """(where, requirement) for every dependency pyproject.toml declares, extras included."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    out = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        out += [(f"optional-dependencies.{extra}", Requirement(r)) for r in requirements]
    return out


def drift(pins: dict[str, list[tuple[Version, str]]],
          requirements: list[tuple[str, Requirement]]) -> list[str]:
    """One line per declared dependency the lock misses or pins outside its range."""
    problems = []
    for where, requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"pyproject.toml [{where}] {requirement}: {name} is not in "
                            f"requirements/lock.txt (refresh the lock)")
            continue
        outside = [str(v) for v, _ in pins[name] if v not in requirement.specifier]
        if outside:
            problems.append(f"pyproject.toml [{where}] {requirement}: the lock pins {name} "
                            f"{', '.join(outside)}, outside the declared range (refresh the lock "
                            f"or change the range)")
    return problems


def test_every_declared_dependency_is_locked_inside_its_range():
    problems = drift(read_lock(LOCK), declared())
    assert not problems, problems[0]


def test_lock_inputs_are_pinned_in_the_lock():
    pins = read_lock(LOCK)
    for line in LOCK_INPUTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            versions = [v for v, _ in pins[canonicalize_name(requirement.name)]]
            assert versions and all(v in requirement.specifier for v in versions), line


def test_drift_is_one_line_naming_the_package(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==1.25.0\n    # via ngpt-tune\nscipy==1.17.1 ; python_version >= '3.11'\n")
    problems = drift(read_lock(lock), [("dependencies", Requirement("numpy>=1.26")),
                                       ("dependencies", Requirement("scipy>=1.11")),
                                       ("optional-dependencies.dev", Requirement("pytest>=8"))])
    assert problems == [
        "pyproject.toml [dependencies] numpy>=1.26: the lock pins numpy 1.25.0, outside the "
        "declared range (refresh the lock or change the range)",
        "pyproject.toml [optional-dependencies.dev] pytest>=8: pytest is not in "
        "requirements/lock.txt (refresh the lock)",
    ]
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize("line", ["numpy>=1.26", "numpy"])
def test_a_lock_line_must_be_a_pin(tmp_path, line):
    lock = tmp_path / "lock.txt"
    lock.write_text(line + "\n")
    with pytest.raises((AssertionError, ValueError)):
        read_lock(lock)
