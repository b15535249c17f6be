"""environment.yml (conda users) and pyproject.toml (pip users) must install the same packages.

Both are edited by hand; a dependency added to one and forgotten in the other breaks only the
users of the other, so the test compares them requirement by requirement.
"""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml

from fer.config import PROJECT_DIR


def _normalise(requirement: str) -> str:
    """``Foo_Bar >= 1.0, <2`` → ``foo-bar>=1.0,<2``: compare meaning, not spelling."""
    req = re.sub(r"\s+", "", requirement)
    name, rest = re.match(r"([A-Za-z0-9._-]+)(.*)", req).groups()
    name = re.sub(r"[-_.]+", "-", name).lower()
    return name + ",".join(sorted(rest.split(","))) if rest else name


def _pyproject() -> dict[str, list[str]]:
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    return {"main": project["dependencies"], **project.get("optional-dependencies", {})}


def _environment() -> dict:
    return yaml.safe_load((PROJECT_DIR / "environment.yml").read_text())


def _pip_section(env: dict) -> list[str]:
    sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "environment.yml needs exactly one `pip:` section"
    return sections[0]


def test_environment_yml_lists_the_same_requirements_as_pyproject() -> None:
    groups = _pyproject()
    expected = {_normalise(r) for r in groups["main"] + groups.get("dev", [])}
    listed = {_normalise(r) for r in _pip_section(_environment()) if not r.startswith("-e")}
    assert listed - expected == set(), "in environment.yml but not in pyproject.toml"
    assert expected - listed == set(), "in pyproject.toml but not in environment.yml"


def test_environment_yml_installs_the_project_and_pins_a_supported_python() -> None:
    env = _environment()
    assert "-e ." in _pip_section(env)
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "pip" in conda
    python = next(d for d in conda if d.startswith("python"))
    # requires-python's floor must be what conda installs at least
    floor = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["requires-python"]
    assert floor.replace(" ", "") in python.replace(" ", "")


def _admits(spec: str, version: str) -> bool:
    """Tiny specifier check (>=, <, <=, ==) without depending on ``packaging``."""
    parse = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    ops = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
           "==": lambda a, b: a == b, ">": lambda a, b: a > b}
    for clause in filter(None, spec.split(",")):
        op, ver = re.match(r"(>=|<=|==|<|>)(.+)", clause).groups()
        n = min(len(parse(ver)), len(parse(version)))
        if not ops[op](parse(version)[:n] + (0,) * (len(parse(ver)) - n), parse(ver)):
            return False
    return True


@pytest.mark.parametrize(
    ("package", "version"),
    [("tensorflow", "2.20.0"), ("tensorflow", "2.21.0"), ("keras", "3.13.0"), ("keras", "3.15.1"),
     ("ipywidgets", "7.7.1"), ("ipywidgets", "8.1.7")],
)
def test_ranges_admit_colab_and_this_machine(package: str, version: str) -> None:
    specs = {re.match(r"[a-z0-9-]+", r).group(): r for r in map(_normalise, _pyproject()["main"])}
    assert _admits(specs[package][len(package):], version), f"{specs[package]} excludes {version}"


def test_python_range_admits_colab() -> None:
    python = next(d for d in _environment()["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert _admits(python[len("python"):], "3.13"), python
