"""fer.reporting.reports without executing notebooks: parameters passed on, the front page's facts, and the
committed front page (reports/html/index.html) checked against the metrics it was written from."""

import html
import json
import re

import pytest

from fer.config import CLASSES, NOTEBOOKS_DIR, PROJECT_DIR, load_profile
from fer.reporting import frontpage, per_class, reports, results

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
    assert "main (the bundled model, not retrained by this run): 1,600,000 params, validation accuracy 70.0 %" in text
    assert ("lite (trained by this run, not shipped): 52,000 params, 10 epochs in 21 min, "
            "validation accuracy 60.0 %") in text
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
    page = reports.write_index(tmp_path / "html", tmp_path, weights_dir=tmp_path / "no-weights").read_text()
    assert 'href="01_explore.html">01 · Exploring</a>' in page and 'href="03_evaluate.html"' in page
    assert "<code>myprof</code>" in page and "2026-01-02 03:04 UTC" in page
    assert "/data/fer2013.zip" in page and '<span class="num">70.1 %</span>' in page
    assert "the 2 notebooks took 24 s" in page
    # notebook 02's models carry what they are: the bundled one, or trained here and not shipped
    assert page.count(frontpage.TRAINED_HERE) == 1 and page.count(frontpage.BUNDLED) == 1
    assert "Shipped models" not in page  # no model cards in that weights folder
    assert "Per class" not in page  # no per-class numbers anywhere: no chart rather than an empty one


def test_per_class_numbers_in_the_metrics_draw_the_chart(tmp_path):
    recall = {c: 0.3 + 0.1 * i for i, c in enumerate(CLASSES)}
    table = {c: {"precision": 0.5, "recall": r, "f1-score": r / 2, "support": 10 + i}
             for i, (c, r) in enumerate(recall.items())}
    metrics = {"evaluate": {**METRICS["evaluate"], "per_class": {"public_test": table}}}
    found, source = per_class.per_class(metrics, tmp_path)
    assert found == table and "reports/metrics" in source
    svg = per_class.per_class_svg(found, accuracy=0.7)
    widths = [float(w) for w in re.findall(r'width="([\d.]+)" height="15" class="recall"', svg)]
    assert widths == pytest.approx([widths[0] / recall[CLASSES[0]] * r for r in recall.values()], abs=0.1)
    assert "surprise" in svg and "16 faces" in svg  # the sixth class's support
    # a report table that is not the metrics' evaluation (another macro-F1) is left out
    (tmp_path / "03_evaluate.html").write_text(
        '<h2 id="Per-class">Per class</h2><table><caption>public_test</caption><tr><th></th><th>f1-score</th></tr>'
        "<tr><th>macro avg</th><td>0.123</td></tr></table>")
    assert per_class.per_class_from_report(tmp_path / "03_evaluate.html") == {"public_test": {"macro avg": {"f1-score": 0.123}}}
    assert per_class.per_class(METRICS, tmp_path) is None


# --------------------------------------------------------------------------- the committed front page

REPORTS = PROJECT_DIR / "reports"


@pytest.fixture(scope="module")
def committed() -> tuple[str, dict]:
    """reports/html/index.html and the metrics it was written from (the profile it names)."""
    page = (REPORTS / "html" / "index.html").read_text(encoding="utf-8")
    profile = re.search(r"Profile <code>([^<]+)</code>", page).group(1)
    return page, json.loads((REPORTS / "metrics" / f"{profile}.json").read_text())


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


def test_front_page_headline_is_the_evaluated_models_with_split_and_interval(committed):
    page, metrics = committed
    ev = metrics["evaluate"]
    split = ev["headline_split"]
    m = ev["splits"][split]
    hero = _text(page[page.index('<section class="hero">'):page.index("</section>")])
    assert f"{100 * m['accuracy']:.1f} % accuracy on FER2013 {frontpage.split_name(split)} ({m['images']:,} faces)" in hero
    lo, hi = m["accuracy_ci"]
    assert f"95 % CI {100 * lo:.1f}–{100 * hi:.1f} %" in hero
    assert f"{m['macro_f1']:.3f}" in hero and f"{100 * ev['unseen_public_test']['accuracy']:.1f} %" in hero
    card = ev["model_card"]
    assert f"{card['params'] / 1e6:.2f} M parameters" in hero
    shipped = json.loads((PROJECT_DIR / "fer" / "weights" / f"{card['name']}.json").read_text())
    assert card["sha256"] == shipped["sha256"] and f"shipped as fer/weights/{card['name']}.keras" in hero
    # the committed study trained nothing: the hero says so and names the shipped ensemble it evaluated
    assert metrics["train"]["trained_in_this_run"] is False and ev["model"]["trained_in_this_run"] is False
    assert (f"{ev['model']['path']} (an ensemble of {ev['model']['members']}, not trained in this run: "
            "only its evaluation ran here)") in hero


def test_front_page_labels_the_runs_models_and_compares_with_the_anchors(committed):
    page, metrics = committed
    trained = page[page.index('id="trained"'):page.index('id="reports"')]
    rows = re.findall(r"<tr><td>(\w+) <span class=\"tag\">([^<]+)</span>", trained)
    assert rows == [(name, frontpage.model_label(m["source"])) for name, m in metrics["train"]["models"].items()]
    assert rows and all(label == frontpage.BUNDLED for _, label in rows)  # the committed study trained nothing
    assert "The shipped models' recipe (notebook 02; nothing retrained)" in trained and "this run trained" not in trained
    comparison = _text(page[page.index('id="comparison"'):page.index('id="shipped"')])
    for anchor in results.ANCHORS:
        assert f"{anchor['model']} {anchor['protocol']} {anchor['accuracy']:.1f} % {anchor['split']}" in comparison
    assert "seed repository CNN (2020) checkpoint selected on the same test split it reports 66.8 % PublicTest" in comparison
    assert "PyPI fer package (mini-Xception) measured by the team (published ~66 %) 65.9 % PrivateTest" in comparison


def test_front_page_per_class_chart_is_drawn_from_the_evaluation(committed):
    page, metrics = committed
    split = metrics["evaluate"]["headline_split"]
    table = per_class.per_class_from_report(REPORTS / "html" / "03_evaluate.html")[split]
    assert table["macro avg"]["f1-score"] == pytest.approx(metrics["evaluate"]["splits"][split]["macro_f1"], abs=5e-4)
    svg = page[page.index("<svg"):page.index("</svg>")]
    bars = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="[\d.]+" class="(recall|f1)">', svg)
    assert len(bars) == 2 * len(CLASSES)
    widths = {kind: [float(w) for w, k in bars if k == kind] for kind in ("recall", "f1")}
    full = widths["recall"][0] / table[CLASSES[0]]["recall"]  # the length of a 100 % bar
    for i, c in enumerate(CLASSES):  # every bar is its class's number, in class order
        assert widths["recall"][i] == pytest.approx(full * table[c]["recall"], abs=0.1), c
        assert widths["f1"][i] == pytest.approx(full * table[c]["f1-score"], abs=0.1), c
        assert f">{c}</text>" in svg and f"{int(table[c]['support']):,} faces" in svg


def test_front_page_links_reach_the_reports_and_reads_on_a_phone(committed):
    page, _ = committed
    links = set(re.findall(r'href="([^"#]+)(?:#[^"]*)?"', page))
    assert {f"{p.stem}.html" for p in sorted(NOTEBOOKS_DIR.glob("0*.ipynb"))} <= links
    for link in links:
        assert (REPORTS / "html" / link).is_file(), link
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<style>" in page and "@media (max-width:" in page and 'viewBox="' in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_committed_front_page_is_what_the_committed_reports_give(committed):
    """Edit the code or the metrics, regenerate it: ``python -m fer reports --index-only``."""
    page, _ = committed
    regenerated = frontpage.index_page(REPORTS / "html", REPORTS)

    def meta_free(text):  # the data line names a path as this machine sees it
        return re.sub(r'<p class="meta">.*?</p>', "", text)

    assert meta_free(regenerated) == meta_free(page)


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


def test_the_page_says_which_model_03_evaluated_and_whether_this_run_trained_anything():
    trained = {"path": "runs/cpu/main-ensemble/model.keras", "kind": "ensemble", "members": 2,
               "trained_in_this_run": True, "sha256": "ab"}
    assert frontpage.model_sentence(trained) == ("runs/cpu/main-ensemble/model.keras (an ensemble of 2, "
                                                 "trained by notebook 02 in this run)")
    shipped = {**trained, "path": "fer/weights/main.keras", "members": 3, "trained_in_this_run": False}
    assert "not trained in this run: only its evaluation ran here" in frontpage.model_sentence(shipped)
    assert frontpage.model_sentence("fer/weights/main.keras") == "fer/weights/main.keras"  # an older metrics file
    nothing_trained = {"train": {"trained_in_this_run": False, "models": {"main": {"params": 4, "source": "shipped"}}}}
    section = frontpage._trained_here(nothing_trained, "full")
    assert "The shipped models' recipe" in section and "This run trained nothing" in section
    assert "this run" not in section.split("This run trained nothing")[0]  # nothing labelled as made here
    recipe_run = {"train": {"trained_in_this_run": True, "models": {"main": {"params": 4}}}}
    assert "The recipe in this run" in frontpage._trained_here(recipe_run, "cpu")
