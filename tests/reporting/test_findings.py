"""The notebooks' closing findings (fer.reporting.findings) and 02's network table (fer.reporting.architecture.layer_table).

The findings are checked against the committed metrics (reports/metrics/full.json): each
sentence must carry the run's own numbers, and a smoke-style run without PublicTest, TTA or
unseen faces must still give sentences rather than fail at the end of a notebook.
"""

import json

import numpy as np
import pytest

from fer.config import CLASSES, REPORTS_DIR
from fer.reporting import findings

FULL = REPORTS_DIR / "metrics" / "full.json"


@pytest.fixture(scope="module")
def committed():
    if not FULL.exists():
        pytest.skip(f"{FULL} is not there")
    return json.loads(FULL.read_text())


def test_findings_show_as_markdown_bullets():
    f = findings.Findings(["one", "two"])
    assert f._repr_markdown_() == "- one\n- two" and repr(f) == "- one\n- two"


def test_explore_carries_the_audit_numbers(committed):
    m = {**committed["explore"], "train_classes": {"happy": 7215, "disgust": 436, "sad": 4830}}
    text = "\n".join(findings.explore(m))
    assert "*happy* is 57.8 %" in text and "*disgust* 3.5 %" in text  # of the 12,481 in this made-up count
    leaked, public = committed["explore"]["leakage"]["public_test"], committed["explore"]["images"]["public_test"]
    assert f"{leaked:,} of the {public:,} public_test images ({100 * leaked / public:.1f} %)" in text
    assert f"{committed['explore']['images']['train']:,} → {committed['explore']['train_after_clean']:,} training images" in text
    d, c = committed["explore"]["duplicates"], committed["explore"]["conflicts"]
    assert f"{d['groups']:,} groups" in text and f"{c['groups']:,} of them carry conflicting labels ({c['images']:,} images)" in text


def test_explore_on_generated_data_says_there_is_nothing_to_fix():
    m = {"train_classes": dict.fromkeys(CLASSES, 70), "images": {"train": 490, "public_test": 98},
         "leakage": {"public_test": 0}, "train_after_clean": 490, "duplicates": {"groups": 0, "images": 0},
         "conflicts": {"groups": 0, "images": 0}}
    assert findings.explore(m) == [
        "490 training images, the classes about equally common (14.3 %-14.3 % each).",
        "No public_test image also occurs in train.",
        "`fer.data.audit.clean` had nothing to drop from train.",
        "No image occurs twice, so no label conflicts either.",
    ]


def test_train_ranks_the_models_and_names_the_search(committed):
    # the committed study trains nothing (the shipped models' cards); a search, as the cpu recipe makes one
    train = {**committed["train"], "tuned_in_this_run": True, "best_hp": {"stem_width": 16, "blocks": [1, 2, 2, 1]}}
    lines = findings.train(train)
    assert lines[0].startswith("The search picked") and "blocks 1-2-2-1" in lines[0]
    models = committed["train"]["models"]
    ranked = [ln.split("**")[1] for ln in lines if ln.startswith("**")]
    assert ranked == sorted(models, key=lambda n: -models[n]["val_accuracy"])  # by validation accuracy
    main = models["main"]
    assert any(f"{100 * main['val_accuracy']:.1f} % validation accuracy on {main['validation']} with {main['params']:,} "
               f"parameters, {main['epochs']} epochs in {main['wall_s'] / 60:.0f} min" in ln for ln in lines)
    gap = 100 * (models[ranked[0]]["val_accuracy"] - models[ranked[1]]["val_accuracy"])
    assert f"{ranked[0]} leads {ranked[1]} by {gap:.1f} points" in "\n".join(lines)


def test_train_without_models_says_so():
    assert findings.train({"models": {}}) == ["No model was trained or bundled in this run."]


def test_evaluate_carries_accuracy_interval_unseen_tta_and_latency(committed):
    m = {**committed["evaluate"], "recall": {"public_test": {"happy": 0.9, "fear": 0.45, "sad": 0.6}}}
    text = "\n".join(findings.evaluate(m))
    pt, unseen, lat = m["splits"]["public_test"], m["unseen_public_test"], m["latency"]
    lo, hi = pt["accuracy_ci"]
    assert (f"right {100 * pt['accuracy']:.1f} % of the time (95 % CI {100 * lo:.1f} %-{100 * hi:.1f} %), "
            f"macro-F1 {pt['macro_f1']:.3f}") in text
    assert (f"{unseen['images']:,} PublicTest faces that never occur in train: {100 * unseen['accuracy']:.1f} %, "
            f"{100 * (pt['accuracy'] - unseen['accuracy']):.1f} points below") in text
    tta = m["tta"]["public_test"]
    best = max(tta, key=lambda k: tta[k]["accuracy"])
    assert f"{best} ({tta[best]['views']} views) gains {100 * (tta[best]['accuracy'] - tta['none']['accuracy']):.1f} points" in text
    assert "Easiest class *happy* (recall 0.90), hardest *fear* (0.45)" in text  # the recall given above
    assert f"{lat['ms_per_image_batch1']:.1f} ms per face on its own, {lat['images_per_s_batched']:,.0f} faces/s batched" in text


def test_evaluate_on_a_smoke_run_without_public_test():
    split = {"images": 70, "accuracy": 0.2, "accuracy_ci": [0.1, 0.3], "macro_f1": 0.1, "macro_f1_ci": [0.0, 0.2], "ece": 0.3}
    m = {"headline_split": "val", "splits": {"val": split, "test": split}, "unseen_public_test": None,
         "tta": {"val": {"none": {"views": 1, "accuracy": 0.2}, "flip": {"views": 2, "accuracy": 0.2}}}}
    lines = findings.evaluate(m)
    assert lines[0].startswith("On val (70 images)") and "does not help" in lines[1]


def test_evaluate_names_the_hardest_changes_and_your_photos():
    worst = {"blur": {"label": "σ 3 px", "accuracy": 0.227, "drop": 0.475},
             "jpeg": {"label": "q 5", "accuracy": 0.412, "drop": 0.290},
             "occlusion": {"label": "24 px", "accuracy": 0.428, "drop": 0.274},
             "shift": {"label": "8 px", "accuracy": 0.651, "drop": 0.051},
             "scale": {"label": "×1.25", "accuracy": 0.662, "drop": 0.040}}
    own = {"source": "my_photos", "mode": "pipeline", "images": 40, "faces_found": 38, "accuracy": 0.5,
           "accuracy_ci": [0.34, 0.66]}
    text = "\n".join(findings.evaluate({"robustness": {"worst": worst}, "own_photos": own}))
    assert "Hardest changes to a face, at their strongest: blur σ 3 px (-47.5), jpeg q 5 (-29.0), occlusion 24 px (-27.4) points" in text
    assert "scale cost under 5 points at any strength tried" in text and "shift" not in text.split(";")[-1]
    assert "Your photos (my_photos): faces found in 38 of 40 photos; accuracy 50.0 % (95 % CI 34.0 %-66.0 %) over 38 faces" in text
    none = findings.evaluate({"own_photos": own | {"faces_found": 0, "accuracy": None}})
    assert none == ["Your photos (my_photos): faces found in 0 of 40 photos; nothing could be scored."]


def test_webcam_summarises_photos_and_the_replay():
    import pandas as pd

    from fer.apps.demo import Replay

    face = {"box": [0, 0, 9, 9], "label": "happy", "probs": dict.fromkeys(CLASSES, 0.0) | {"happy": 0.81}}
    table = pd.DataFrame({"faces": [1, 1, 0, 1], "label": ["happy", "happy", None, "sad"]})
    lines = findings.webcam({"astronaut": [face], "empty.jpg": []}, Replay(table, [], 10.0, [12.0, 14.0, 30.0]))
    assert lines[0] == "Sample photos: astronaut: happy (0.81); empty.jpg: no face."
    assert "4 frames at 10.0 a second: a face in 75 % of them" in lines[1] and "happy 67 %, sad 33 %" in lines[1]
    assert "14 ms per frame (median)" in lines[2]


# --------------------------------------------------------------------------- layer_table


@pytest.fixture(scope="module")
def resnet():
    from fer.training import networks

    return networks.build("resnet", {"stem_width": 16, "widths": [32, 64, 128, 256], "blocks": [1, 2, 2, 1], "crop": 40})


def test_layer_table_folds_normalisation_into_the_layer_it_follows(resnet):
    from fer.reporting import architecture

    table = architecture.layer_table(resnet)
    body = table.iloc[:-1]
    assert body["parameters"].sum() == table["parameters"].iloc[-1] == resnet.count_params()
    assert not body["layer"].str.match(r"^(batchnormalization|relu|dropout|activation)").any()
    assert (body["layer"] == "add (residual) + ReLU").sum() == 1 + 2 + 2 + 1  # one per residual block
    assert body["layer"].iloc[2] == "conv 3×3, 16 + BN + ReLU" and body["output"].iloc[2] == "40×40×16"
    assert body["layer"].iloc[-1] == "dense 7 + softmax" and body["output"].iloc[-1] == "7"
    projections = body[body["layer"].str.startswith("conv 1×1")]
    assert list(projections["output"]) == ["20×20×32", "10×10×64", "5×5×128", "3×3×256"]


def test_layer_table_runs_on_every_architecture():
    from fer.reporting import architecture
    from fer.training import networks

    for arch in ("baseline", "lite"):
        model = networks.build(arch)
        table = architecture.layer_table(model)
        assert table["parameters"].iloc[:-1].sum() == model.count_params()
        assert np.all(table["layer"].str.len() > 0)
