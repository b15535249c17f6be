"""fer.reports without executing notebooks: parameters passed on, the index page's facts."""

import json

import pytest

from fer import reports
from fer.config import NOTEBOOKS_DIR, load_profile

METRICS = {
    "explore": {"source": "/data/fer2013.zip"},
    "evaluate": {
        "splits": {"public_test": {"images": 3589, "accuracy": 0.7012, "accuracy_ci": [0.686, 0.716],
                                   "macro_f1": 0.68, "ece": 0.031}},
        "unseen_public_test": {"images": 3309, "accuracy": 0.695},
        "latency": {"ms_per_image_batch1": 2.5, "images_per_s_batched": 900.0, "device": "AMD EPYC"},
        "model": "the bundled model (fer/weights/main.keras)",
    },
    "train": {"models": {"main": {"params": 1_600_000, "val_accuracy": 0.70, "source": "bundled"},
                         "lite": {"params": 52_000, "epochs": 10, "wall_s": 1260, "val_accuracy": 0.6,
                                  "source": "trained in this run"}}},
}


def test_headline_reads_every_section():
    text = "\n".join(reports.headline(METRICS))
    assert "public_test: accuracy 70.1 % (95 % CI 68.6-71.6)" in text
    assert "not in train: accuracy 69.5 % on 3309 images" in text
    assert "2.5 ms per face" in text and "AMD EPYC" in text
    assert "main: 1,600,000 params, validation accuracy 70.0 % (bundled)" in text
    assert "lite: 52,000 params, 10 epochs in 21 min, validation accuracy 60.0 % (trained in this run)" in text
    assert reports.headline({}) == []


def test_index_links_pages_and_names_profile_data_and_numbers(tmp_path):
    import nbformat
    from nbformat.v4 import new_markdown_cell, new_notebook

    for d in ("html", "executed", "metrics"):
        (tmp_path / d).mkdir()
    for stem, title in (("01_explore", "01 · Exploring"), ("03_evaluate", "03 · Evaluation")):
        (tmp_path / "html" / f"{stem}.html").write_text("<html></html>")
        nb = new_notebook(cells=[new_markdown_cell(f"# {title}")])
        nb.metadata["papermill"] = {"parameters": {"profile": "myprof", "data_source": None},
                                    "end_time": "2026-01-02T03:04:05", "duration": 12.0}
        nbformat.write(nb, str(tmp_path / "executed" / f"{stem}.ipynb"))
    (tmp_path / "metrics" / "myprof.json").write_text(json.dumps(METRICS))
    page = reports.write_index(tmp_path / "html", tmp_path).read_text()
    assert 'href="01_explore.html">01 · Exploring</a>' in page and 'href="03_evaluate.html"' in page
    assert "<code>myprof</code>" in page and "2026-01-02 03:04 UTC" in page
    assert "/data/fer2013.zip" in page and "70.1 %" in page
    assert "the 2 notebooks took 24 s" in page


def test_profile_tune_block_or_false_becomes_the_tune_parameter():
    profile = load_profile("smoke")
    nb = NOTEBOOKS_DIR / "02_train_tune.ipynb"
    assert reports.notebook_parameters(profile, nb)["tune"] is True
    assert reports.notebook_parameters({**profile, "tune": False}, nb)["tune"] is False
    assert "model_path" not in reports.notebook_parameters(profile, nb)  # 02 does not declare it


def test_render_without_executed_notebooks_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="reproduce"):
        reports.render(tmp_path)


def test_short_path_hides_this_machines_folders():
    from fer.config import PROJECT_DIR, short_path

    assert short_path(PROJECT_DIR / "fer" / "weights" / "main.keras") == "fer/weights/main.keras"
    assert short_path(PROJECT_DIR.parent / "shared" / "data" / "fer2013.zip") == "../shared/data/fer2013.zip"
    far = PROJECT_DIR.parent.parent / "elsewhere" / "x.zip"
    assert short_path(far) == str(far.resolve())  # not beside the project: stays absolute
