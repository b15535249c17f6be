"""``python -m fer reproduce --profile smoke``: every notebook runs on generated data and becomes
an HTML report with its figures embedded; a failing notebook names its cell.

Runs into a temporary reports/runs folder, so the repository's reports are left alone. 4-6
minutes on 2 CPU cores shared with a training job (most of it 02_train_tune).
"""

import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from fer.reporting import reports

pytestmark = pytest.mark.slow

#: Embedded PNG figures each report must contain at least: 01 balance, samples, pixels; 02 trial
#: scores, learning curves; 03 confusion, reliability, robustness and the own photos' confusion
#: (the mistakes galleries need mistakes); 04 the annotated photos.
MIN_FIGURES = {"01_explore": 3, "02_train_tune": 2, "03_evaluate": 4, "04_webcam_demo": 1}


def _own_photos(root):
    """A labelled set of two photos for 03's eval_source: the astronaut (happy) and a wall (no face)."""
    import cv2
    import numpy as np
    from skimage import data as skimage_data

    (root / "happiness").mkdir(parents=True)
    (root / "sad").mkdir()
    cv2.imwrite(str(root / "happiness" / "astronaut.png"), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / "sad" / "wall.png"), np.full((200, 200, 3), 120, np.uint8))
    return root


@pytest.fixture(scope="module")
def smoke_reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    mp = pytest.MonkeyPatch()
    # Training runs go to the temporary folder (the kernels inherit this); reproduce itself
    # points the kernels' metrics at reports_dir.
    mp.setenv("FER_RUNS_DIR", str(root / "runs"))
    lines = []
    own = str(_own_photos(root / "own"))
    index = reports.reproduce("smoke", {"eval_source": own}, reports_dir=root / "reports", log=lines.append)
    yield root / "reports", index, lines
    mp.undo()


def test_every_notebook_becomes_html_with_embedded_figures(smoke_reports):
    rep, _, _ = smoke_reports
    for stem, n in MIN_FIGURES.items():
        page = (rep / "html" / f"{stem}.html").read_text()
        figures = len(re.findall(r'<img[^>]+src="data:image/png;base64,', page))
        assert figures >= n, f"{stem}.html has {figures} embedded figures, expected at least {n}"
        assert "import fer" not in page, f"{stem}.html shows code; reports hide the input cells"


def test_evaluate_shows_robustness_and_the_own_photos(smoke_reports):
    rep, _, _ = smoke_reports
    page = (rep / "html" / "03_evaluate.html").read_text()
    assert "faces found in 1 of 2 photos (50.0%)" in page and "sad/wall.png" in page
    import json

    ev = json.loads((rep / "metrics" / "smoke.json").read_text())["evaluate"]
    assert ev["own_photos"]["faces_found"] == 1 and ev["own_photos"]["images"] == 2
    assert ev["robustness"]["perturbations"] and 0 <= ev["robustness"]["baseline"] <= 1


def test_progress_line_per_notebook_and_an_index(smoke_reports):
    rep, index, lines = smoke_reports
    assert sum(" ok in " in line for line in lines) == len(MIN_FIGURES)
    page = index.read_text()
    for stem in MIN_FIGURES:
        assert f'href="{stem}.html"' in page
    assert "smoke" in page and "synthetic" in page
    assert "public_test: accuracy" in page  # headline numbers read from reports/metrics/smoke.json


def test_metrics_json_has_every_section(smoke_reports):
    import json

    rep, _, _ = smoke_reports
    metrics = json.loads((rep / "metrics" / "smoke.json").read_text())
    assert {"explore", "train", "evaluate"} <= set(metrics)
    pt = metrics["evaluate"]["splits"]["public_test"]
    assert pt["accuracy_ci"][0] <= pt["accuracy"] <= pt["accuracy_ci"][1]
    assert set(metrics["train"]["models"]) == {"main", "lite"}  # smoke shows the baseline's published figure


def test_the_recipe_shape_members_ensemble_and_the_lite_taught_by_what_03_evaluates(smoke_reports):
    """02 trains at least two members and averages them; 03 evaluates that ensemble (a runs/ file,
    not fer/weights); the lite learned from exactly that file."""
    import json

    rep, _, _ = smoke_reports
    metrics = json.loads((rep / "metrics" / "smoke.json").read_text())
    main, lite, evaluated = metrics["train"]["models"]["main"], metrics["train"]["models"]["lite"], metrics["evaluate"]["model"]
    assert main["kind"] == "ensemble" and main["members"] >= 2 and metrics["train"]["trained_in_this_run"]
    assert evaluated["kind"] == "ensemble" and evaluated["members"] == main["members"]
    assert evaluated["trained_in_this_run"] is True
    assert evaluated["path"].endswith("smoke/main-ensemble/model.keras") and "fer/weights" not in evaluated["path"]
    assert evaluated["sha256"] == main["sha256"] == lite["teacher"]["sha256"]


def test_render_converts_without_executing(smoke_reports):
    rep, _, lines = smoke_reports
    (rep / "html" / "03_evaluate.html").unlink()
    out = []
    reports.render(rep, log=out.append)
    assert (rep / "html" / "03_evaluate.html").exists()
    assert len(out) == len(MIN_FIGURES) + 1


def test_failing_notebook_names_the_cell(tmp_path):
    nb = new_notebook(cells=[
        new_markdown_cell("# broken"),
        new_code_cell("x = 1"),
        new_code_cell("# the failing step\nraise ValueError('no such split: val')"),
    ])
    path = tmp_path / "nb" / "01_broken.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, str(path))
    with reports.current_interpreter_kernel() as kernel, pytest.raises(reports.NotebookFailed) as err:
        reports.execute(path, {}, tmp_path / "out", kernel)
    msg = str(err.value)
    assert "01_broken.ipynb" in msg and "cell 2" in msg and "raise ValueError" in msg
    assert "no such split: val" in msg and str(tmp_path / "out") in msg


def test_only_runs_the_named_notebooks(tmp_path, monkeypatch):
    books = tmp_path / "nb"
    books.mkdir()
    probe = "import os, pathlib\nassert pathlib.Path(os.environ['FER_DATA']).is_file(), os.environ['FER_DATA']"
    nbformat.write(new_notebook(cells=[new_code_cell(probe)]), str(books / "01_fine.ipynb"))
    nbformat.write(new_notebook(cells=[new_code_cell("raise ValueError('not selected')")]), str(books / "02_broken.ipynb"))
    (tmp_path / "fer2013.zip").write_bytes(b"")
    lines = []
    with monkeypatch.context() as mp:  # a relative $FER_DATA still names the file inside the kernel
        mp.chdir(tmp_path)
        mp.setenv("FER_DATA", "fer2013.zip")
        reports.reproduce("smoke", reports_dir=tmp_path / "rep", notebook_dir=books, log=lines.append, only=["01"])
    assert (tmp_path / "rep" / "html" / "01_fine.html").exists()
    assert not (tmp_path / "rep" / "executed" / "02_broken.ipynb").exists()
    assert sum(" ok in " in line for line in lines) == 1
    with pytest.raises(ValueError, match="starts with 99"):
        reports.reproduce("smoke", reports_dir=tmp_path / "rep", notebook_dir=books, only=["99"])
