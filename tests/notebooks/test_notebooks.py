"""The notebooks as committed: no outputs, the agreed parameters, one identical bootstrap cell.

Static checks, seconds in all; the executed chain is in ``test_smoke_chain.py``.
"""

import json
import subprocess
import sys

import papermill as pm
import pytest

from fer import reports
from fer.config import NOTEBOOK_PARAMETERS, NOTEBOOKS_DIR

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_bootstrap_comes_first_then_parameters(path):
    code = code_cells(path)
    assert "google.colab" in source(code[0]) and "GPU" in source(code[0])
    assert "parameters" in code[1].get("metadata", {}).get("tags", [])


def test_bootstrap_cell_is_identical_everywhere():
    first = {p.stem: source(code_cells(p)[0]) for p in NOTEBOOKS}
    assert len(set(first.values())) == 1, "bootstrap cells differ: " + ", ".join(first)


def test_bootstrap_installs_only_what_colab_lacks():
    boot = source(code_cells(NOTEBOOKS[0])[0])
    assert "--no-deps" in boot and "keras-tuner" in boot and "papermill" in boot
    assert "tensorflow" not in boot.split("pip")[-1].split("\n")[0]  # Colab's TF is kept


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
        assert values["tune"] is bool(profile.get("tune"))  # a tune: block searches; tune: false does not
        assert all(not isinstance(v, (dict, list)) for v in values.values())


def test_full_profile_main_model_within_budget():
    from fer import models
    from fer.config import load_profile

    hp = load_profile("full")["train"]["hp"]
    assert models.build("resnet", hp).count_params() <= 5_000_000
