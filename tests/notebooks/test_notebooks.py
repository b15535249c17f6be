"""The notebooks as committed: no outputs, the agreed parameters, one identical setup cell,
narrative cells that call ``fer``, a closing "What we found", and imports a plain install has.

Static checks, seconds in all; the executed chain is in ``test_smoke_chain.py``, Colab in
``test_colab.py``, TensorFlow's start-up lines in ``test_quiet_start.py``.
"""

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import papermill as pm
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement

from fer.config import NOTEBOOK_PARAMETERS, NOTEBOOKS_DIR, PROJECT_DIR
from fer.reporting import colab, reports

NOTEBOOKS = reports.notebooks()
EXPECTED = ["01_explore", "02_train_tune", "03_evaluate", "04_webcam_demo"]


def cells(path):
    return json.loads(path.read_text())["cells"]


def code_cells(path):
    return [c for c in cells(path) if c["cell_type"] == "code"]


def source(cell):
    return "".join(cell["source"])


def test_the_four_notebooks_exist_in_order():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_or_execution_counts(path):
    dirty = [i for i, c in enumerate(code_cells(path)) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; run nbstripout {path}"


def test_nbstripout_verify_passes():
    result = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *map(str, NOTEBOOKS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_declares_the_agreed_parameters(path):
    declared = pm.inspect_notebook(str(path))
    missing = set(NOTEBOOK_PARAMETERS) - set(declared)
    assert not missing, f"{path.name} lacks parameters {sorted(missing)}"
    assert declared["interactive"]["default"] == "True"  # a person running it gets the widgets


def python(cell_source: str) -> ast.Module:
    """A cell as Python (``!cmd`` and ``%magic`` lines become calls, as IPython runs them)."""
    return ast.parse(TransformerManager().transform_cell(cell_source))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_comes_first_then_parameters(path):
    code = code_cells(path)
    assert "google.colab" in source(code[0]) and "GPU" in source(code[0])  # the hint: a GPU runtime for 02
    assert "parameters" in code[1].get("metadata", {}).get("tags", [])


def test_setup_cell_is_six_lines_identical_everywhere_with_pyprojects_url():
    first = {p.stem: source(code_cells(p)[0]) for p in NOTEBOOKS}
    assert len(set(first.values())) == 1, "setup cells differ: " + ", ".join(first)
    cell = next(iter(first.values()))
    assert len(cell.splitlines()) <= 6, cell
    url = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    assert cell == colab.setup_cell(url)
    assert re.findall(r"https://github\.com/\S+", cell) == [url]


def _run_setup(cell: str, in_colab: bool, monkeypatch) -> tuple[list, list]:
    """Execute the setup cell as IPython would, with IPython's shell calls recorded, not run."""
    calls = []

    class Shell:
        def system(self, cmd):
            calls.append(("!", cmd))

        def run_line_magic(self, name, line):
            calls.append(("%" + name, line))

    path = list(sys.path)
    if in_colab:
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    code = compile(python(cell), "<setup cell>", "exec")
    try:
        exec(code, {"get_ipython": Shell})
        added = [p for p in sys.path if p not in path]
    finally:
        sys.path[:] = path
    return calls, added


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    calls, added = _run_setup(source(code_cells(NOTEBOOKS[0])[0]), in_colab=False, monkeypatch=monkeypatch)
    assert calls == [] and added == []


def test_setup_cell_on_colab_clones_and_installs_with_dependencies(monkeypatch):
    calls, added = _run_setup(source(code_cells(NOTEBOOKS[0])[0]), in_colab=True, monkeypatch=monkeypatch)
    (bang, clone), (magic, install) = calls
    url = colab.repository_url()
    assert bang == "!" and f"git clone -q --depth 1 {url} {colab.CLONE_DIR}" in clone
    assert clone.startswith(f"test -d {colab.CLONE_DIR} ||")  # running the cell again does not clone again
    # pip resolves pyproject's dependencies against what Colab has: only the missing ones come in
    # (ai-edge-litert for BlazeFace, keras-tuner and papermill of the study extra, ...)
    assert magic == "%pip" and install == f'install -q -e "{colab.CLONE_DIR}[study]"' and "--no-deps" not in install
    assert added == [colab.CLONE_DIR]  # this kernel imports the clone's fer (params/, runs/ beside it)


def test_no_function_or_class_definitions_in_notebooks():
    defined = [(p.stem, i, node.name) for p in NOTEBOOKS for i, c in enumerate(code_cells(p))
               for node in ast.walk(python(source(c))) if isinstance(node, ast.FunctionDef | ast.ClassDef)]
    assert not defined, f"definitions belong in fer/, notebooks call them: {defined}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_ends_with_what_we_found_from_the_run(path):
    *_, heading, last = cells(path)
    assert heading["cell_type"] == "markdown" and source(heading).startswith("## What we found"), source(heading)
    # the numbers come from the run: a fer.reporting.findings call on this run's values is the last cell
    calls = [n for n in ast.walk(python(source(last))) if isinstance(n, ast.Call)]
    assert last["cell_type"] == "code" and calls and ast.unparse(calls[0].func).startswith("findings."), source(last)


# --------------------------------------------------------------------------- imports


def notebook_imports(path: Path) -> set[str]:
    """Top-level modules a notebook imports, less the standard library and fer itself."""
    names = set()
    for cell in code_cells(path):
        for node in ast.walk(python(source(cell))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"fer"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure() -> set[str]:
    """What the notebooks' setup cell installs (pyproject's core dependencies and the study extra)
    and everything they require, as installed here."""
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["study"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = _canonical(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(req.name) or []]
        except metadata.PackageNotFoundError:
            pass
    return seen


def unprovided(modules: set[str]) -> dict[str, list[str]]:
    """Modules no runtime dependency provides, with the distributions that do provide them here."""
    closure, providers = runtime_closure(), metadata.packages_distributions()
    return {m: providers.get(m, []) for m in sorted(modules)
            if not any(_canonical(d) in closure for d in providers.get(m, []))}


def test_a_dev_only_import_would_be_caught():
    assert set(unprovided({"pytest", "playwright", "pandas"})) == {"pytest", "playwright"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_come_with_a_plain_install(path):
    """A notebook opened where the project was installed as the setup cell installs it ([study], not [dev]) must import."""
    modules = notebook_imports(path)
    assert modules, "found no imports at all: the parser is broken"
    assert not unprovided(modules), f"{path.name} imports modules only the dev extra (or nothing) provides: {unprovided(modules)}"


def test_cells_stay_short():
    long = [(p.stem, i) for p in NOTEBOOKS for i, c in enumerate(code_cells(p)[2:], 2)
            if len(source(c).splitlines()) > 45]
    assert not long, f"cells longer than 45 lines belong in fer/: {long}"


def test_profiles_give_notebooks_only_scalar_parameters():
    from fer.config import PARAMS_DIR, load_profile

    names = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
    assert {"smoke", "cpu", "full"} <= set(names)
    for name in names:
        profile = load_profile(name)
        values = reports.notebook_parameters(profile, NOTEBOOKS_DIR / "02_train_tune.ipynb")
        assert values["profile"] == name
        # a tune: block searches; tune: false or tune_in_recipe: false (full: the shipped recipe) does not
        assert values["tune"] is (bool(profile.get("tune")) and profile.get("tune_in_recipe", True) is not False)
        assert all(not isinstance(v, (dict, list)) for v in values.values())


def test_full_profile_models_within_budget():
    from fer.config import load_profile
    from fer.training import networks

    full = load_profile("full")
    assert networks.build("resnet", full["main"]["hp"]).count_params() <= 5_000_000
    assert networks.build("lite", full["lite"]["hp"]).count_params() < 100_000
