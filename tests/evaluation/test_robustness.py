"""fer.evaluation.robustness: each perturbation does what its name says, and the table counts exactly."""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fer.config import NUM_CLASSES  # noqa: E402
from fer.evaluation import robustness
from fer.evaluation.robustness import PERTURBATIONS, perturb  # noqa: E402
from fer.reporting import plots  # noqa: E402

RANDOM = ("rotation", "shift", "occlusion")


@pytest.fixture(scope="module")
def faces():
    """Smooth random faces (noise blurred, plus a gradient): no two alike, nothing symmetric."""
    import cv2

    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 255, (12, 48, 48)).astype(np.float32)
    smooth = np.array([cv2.GaussianBlur(f, (0, 0), 2) for f in noise])
    ramp = np.linspace(-60, 60, 48, dtype=np.float32)[None, None, :]
    return np.clip(smooth + ramp, 0, 255).astype(np.uint8)


def test_identity_returns_the_input_and_every_strength_keeps_dtype_and_shape(faces):
    for name, spec in PERTURBATIONS.items():
        out = perturb(faces, name, spec.identity)
        np.testing.assert_array_equal(out, faces)
        assert out is not faces
        for s in spec.levels:
            out = perturb(faces, name, s, seed=3)
            assert out.dtype == np.uint8 and out.shape == faces.shape, (name, s)
            if s != spec.identity:
                assert not np.array_equal(out, faces), (name, s)


def test_random_perturbations_repeat_for_a_seed_and_differ_across_seeds(faces):
    for name in PERTURBATIONS:
        s = PERTURBATIONS[name].levels[-1]
        np.testing.assert_array_equal(
            perturb(faces, name, s, seed=1), perturb(faces, name, s, seed=1)
        )
        if name in RANDOM:
            assert not np.array_equal(
                perturb(faces, name, s, seed=1), perturb(faces, name, s, seed=2)
            ), name
        else:  # nothing random: the seed must not matter
            np.testing.assert_array_equal(
                perturb(faces, name, s, seed=1), perturb(faces, name, s, seed=2)
            )


def test_brightness_and_contrast_move_mean_and_spread_the_right_way(faces):
    mean = faces.mean(axis=(1, 2))
    assert (perturb(faces, "brightness", 0.6).mean(axis=(1, 2)) < mean).all()
    assert (perturb(faces, "brightness", 1.5).mean(axis=(1, 2)) > mean).all()
    np.testing.assert_allclose(perturb(faces, "brightness", 0.4), np.rint(faces * 0.4), atol=0)
    assert perturb(faces, "brightness", 2.0).max() == 255  # clipped, not wrapped round
    std = faces.std(axis=(1, 2))
    flat = perturb(faces, "contrast", 0.5)
    np.testing.assert_allclose(flat.std(axis=(1, 2)), 0.5 * std, atol=0.5)
    np.testing.assert_allclose(flat.mean(axis=(1, 2)), mean, atol=0.5)  # the mean stays
    assert (perturb(faces, "contrast", 1.5).std(axis=(1, 2)) > std).all()


def test_blur_removes_high_frequencies_monotonically(faces):
    def energy(x):  # mean squared difference of neighbouring pixels
        x = x.astype(float)
        return np.mean(np.diff(x, axis=1) ** 2) + np.mean(np.diff(x, axis=2) ** 2)

    values = [energy(perturb(faces, "blur", s)) for s in PERTURBATIONS["blur"].levels]
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values


def test_jpeg_quality_5_is_further_from_the_original_than_50(faces):
    err = {q: np.abs(perturb(faces, "jpeg", q).astype(int) - faces).mean() for q in (50, 25, 10, 5)}
    assert 0 < err[50] < err[10] < err[5]


def test_occlusion_blacks_out_exactly_one_square(faces):
    white = np.full((20, 48, 48), 200, np.uint8)
    for side in (8, 12, 16, 24):
        out = perturb(white, "occlusion", side, seed=side)
        assert ((out == robustness.OCCLUSION_FILL).sum(axis=(1, 2)) == side * side).all()
        rows, cols = np.nonzero(out[0] == 0)
        assert rows.max() - rows.min() == cols.max() - cols.min() == side - 1  # a square, one block
    positions = {tuple(np.argwhere(f == 0)[0]) for f in perturb(white, "occlusion", 8)}
    assert len(positions) > 1  # placed per image


def test_rotation_shift_and_scale_move_a_dot_as_stated():
    dot = np.zeros((40, 48, 48), np.uint8)
    dot[:, 23:25, 35:37] = 255  # a 2x2 dot 12 px right of the centre (23.5, 23.5)
    turned = perturb(dot, "rotation", 30, seed=0).astype(float)
    yy, xx = np.mgrid[:48, :48]
    cy, cx = ((turned * g).sum(axis=(1, 2)) / turned.sum(axis=(1, 2)) for g in (yy, xx))
    angles = np.degrees(np.arctan2(cy - 23.5, cx - 23.5))
    assert np.allclose(np.abs(angles), 30, atol=1)
    assert len(set(np.sign(angles))) == 2  # both directions occur
    np.testing.assert_array_equal(perturb(dot, "rotation", 0), dot)
    for d in (2, 4, 6, 8):
        moved = perturb(dot, "shift", d, seed=d)
        assert (
            moved.reshape(len(dot), -1).max(axis=1) == 255
        ).all()  # moved whole, not interpolated
        ys, xs = zip(*(np.argwhere(f == 255).min(axis=0) for f in moved), strict=True)
        dist = np.hypot(np.array(ys) - 23, np.array(xs) - 35)
        assert (np.abs(dist - d) <= 0.71).all(), (d, dist)
    disk = np.zeros((1, 48, 48), np.uint8)
    disk[0][(yy - 23.5) ** 2 + (xx - 23.5) ** 2 < 100] = 255
    area = {s: (perturb(disk, "scale", s) > 127).sum() for s in PERTURBATIONS["scale"].levels}
    assert area[0.8] < area[0.9] < area[1.0] < area[1.1] < area[1.25]


def test_unknown_name_strength_or_array_is_a_value_error(faces):
    with pytest.raises(ValueError, match="brightness.*occlusion"):
        perturb(faces, "fog", 1)
    with pytest.raises(ValueError, match=r"0\.4, 0\.6"):
        perturb(faces, "brightness", 0.3)
    with pytest.raises(ValueError, match="uint8"):
        perturb(faces.astype(np.float32), "blur", 1)
    with pytest.raises(ValueError, match="jpeg"):
        robustness.table(None, faces, np.zeros(len(faces), int), {"jpeg": (7,)}, progress=False)


class MeanClassifier:
    """Says 'happy' (3) for a face brighter than 100 on average, 'angry' (0) otherwise."""

    def __init__(self):
        self.calls = []

    def predict_proba(self, faces, tta=None):
        self.calls.append(tta)
        p = np.zeros((len(faces), NUM_CLASSES), np.float32)
        p[np.arange(len(faces)), np.where(faces.mean(axis=(1, 2)) > 100, 3, 0)] = 1
        return p


def flat_faces():
    """4 faces at 150 labelled happy, 6 at 60 labelled angry, 1 at 150 labelled surprise (always wrong)."""
    values = np.array([150] * 4 + [60] * 6 + [150])
    return np.broadcast_to(values[:, None, None], (11, 48, 48)).astype(np.uint8), np.array(
        [3] * 4 + [0] * 6 + [6]
    )


def test_table_counts_exactly_and_shares_one_baseline():
    x, y = flat_faces()
    clf = MeanClassifier()
    t = robustness.table(
        clf,
        x,
        y,
        {"brightness": (0.4, 0.6, 1.5, 2.0), "blur": (2,)},
        tta="flip",
        n_boot=50,
        progress=False,
    )
    assert clf.calls == ["flip"] * 6  # the baseline once, then one pass per perturbed strength
    got = dict(
        zip(zip(t["perturbation"], t["label"], strict=True), t["accuracy"] * 11, strict=True)
    )
    # ×0.4: 150→60 (happy now wrong); ×0.6: 150→90; ×1.5: 60→90 still angry; ×2: 60→120 wrong
    assert got == pytest.approx(
        {
            ("brightness", "×0.4"): 6,
            ("brightness", "×0.6"): 6,
            ("brightness", "×1"): 10,
            ("brightness", "×1.5"): 10,
            ("brightness", "×2"): 4,
            ("blur", "σ 0 px"): 10,
            ("blur", "σ 2 px"): 10,
        }
    )
    assert list(t.columns) == [
        "perturbation",
        "strength",
        "label",
        "accuracy",
        "low",
        "high",
        "images",
    ]
    ident = t[robustness.is_identity(t)]
    assert list(ident["label"]) == ["×1", "σ 0 px"]
    assert ident[["accuracy", "low", "high"]].nunique().eq(1).all()  # the same row twice
    assert (t["low"] <= t["accuracy"]).all() and (t["accuracy"] <= t["high"]).all()
    assert (t["images"] == 11).all()
    s = robustness.summary(t)
    json.dumps(s)
    assert s["baseline"] == pytest.approx(10 / 11)
    assert s["perturbations"]["brightness"]["×2"] == pytest.approx(4 / 11)
    assert list(s["worst"]) == ["brightness", "blur"]
    assert s["worst"]["brightness"] == {
        "label": "×2",
        "accuracy": pytest.approx(4 / 11),
        "drop": pytest.approx(6 / 11),
    }


def test_full_table_and_its_figure(faces):
    y = np.zeros(len(faces), int)
    t = robustness.table(MeanClassifier(), faces, y, n_boot=20, progress=False)
    assert len(t) == sum(len(spec.levels) for spec in PERTURBATIONS.values())
    assert list(dict.fromkeys(t["perturbation"])) == list(PERTURBATIONS)
    ident = t[robustness.is_identity(t)]
    assert list(ident["perturbation"]) == list(PERTURBATIONS)  # one each, jpeg's "none" included
    assert list(ident["label"]) == ["×1", "×1", "σ 0 px", "none", "0°", "0 px", "×1", "0 px"]
    np.testing.assert_array_equal(perturb(faces, "jpeg", t["strength"][ident.index[3]]), faces)
    fig = plots.robustness(t, title="test")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert [ax.get_title() for ax in fig.axes] == list(PERTURBATIONS)
    baseline = robustness.summary(t)["baseline"]
    for ax, (_, part) in zip(fig.axes, t.groupby("perturbation", sort=False), strict=True):
        assert [tick.get_text() for tick in ax.get_xticklabels()] == list(part["label"])
        np.testing.assert_allclose(ax.lines[0].get_ydata(), part["accuracy"])
        assert ax.lines[1].get_linestyle() == "--" and ax.lines[1].get_ydata()[0] == pytest.approx(
            baseline
        )
    assert len({ax.get_ylim() for ax in fig.axes}) == 1  # one shared y axis
    fig = plots.robustness(t[t["perturbation"].isin(["blur", "jpeg", "shift"])])
    assert len(fig.axes) == 3
