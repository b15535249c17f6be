"""Robustness: how accuracy falls on faces darker, flatter, blurrier, more compressed, turned,
off-centre, zoomed or partly covered than FER2013's, so a user knows which photos to distrust.

FER2013's crops all came out of one pipeline; a phone photo or a webcam frame does not. Each
perturbation is one controlled departure from it, applied to the uint8 ``(N, 48, 48)`` crops
``predict_proba`` takes. :func:`table` measures, :func:`summary` gives a metrics file plain
numbers, ``fer.reporting.plots.robustness`` draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from fer.config import IMAGE_SIZE as S

#: Grey value of the occluding square: black, like a hand, a phone or sunglasses in shadow.
OCCLUSION_FILL = 0


class Perturbation(NamedTuple):
    """One kind of degradation: its strengths in plot order (the identity among them), the
    strength that changes nothing, how a strength is written, and what it measures."""

    levels: tuple
    identity: float | None
    pattern: str
    axis: str

    def label(self, strength: float | None) -> str:
        return "none" if strength is None else self.pattern.format(strength)


#: The columns of :func:`table`.
COLUMNS = ("perturbation", "strength", "label", "accuracy", "low", "high", "images")

#: Every perturbation, in the order of the table and the figure. Random parts (the sign of a
#: rotation, the direction of a shift, where the square goes) are drawn per image from the seed.
PERTURBATIONS: dict[str, Perturbation] = {
    "brightness": Perturbation((0.4, 0.6, 1.0, 1.5, 2.0), 1.0, "×{:g}", "pixels × factor, clipped"),
    "contrast": Perturbation((0.25, 0.5, 0.75, 1.0, 1.5), 1.0, "×{:g}", "deviation from mean ×"),
    "blur": Perturbation((0, 0.5, 1, 2, 3), 0, "σ {:g} px", "Gaussian σ at 48 px"),
    "jpeg": Perturbation((None, 50, 25, 10, 5), None, "q {:g}", "JPEG quality"),
    "rotation": Perturbation((0, 10, 20, 30, 45), 0, "{:g}°", "in-plane angle, random sign"),
    "shift": Perturbation((0, 2, 4, 6, 8), 0, "{:g} px", "crop moved, random direction"),
    "scale": Perturbation((0.8, 0.9, 1.0, 1.1, 1.25), 1.0, "×{:g}", "zoom about the centre"),
    "occlusion": Perturbation((0, 8, 12, 16, 24), 0, "{:g} px", "side of a black square"),
}


def _strength(s: Any) -> Any:
    """NaN (jpeg's None as a table's float column holds it) back to None."""
    return None if s is None or s != s else s


def _spec(name: str, strength: Any = ...) -> Perturbation:
    """The named perturbation; a ValueError that lists the valid choices for a wrong name or strength."""
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; choose one of {', '.join(PERTURBATIONS)}")
    spec = PERTURBATIONS[name]
    if strength is not ... and strength not in spec.levels:
        raise ValueError(f"{name} takes a strength in {spec.levels}, not {strength!r}")
    return spec


def _warp(face: np.ndarray, angle: float, scale: float) -> np.ndarray:
    """Rotate/zoom about the image centre; the edge pixels are repeated where the face leaves the frame."""
    import cv2

    m = cv2.getRotationMatrix2D(((S - 1) / 2, (S - 1) / 2), float(angle), float(scale))
    return cv2.warpAffine(face, m, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def perturb(x: np.ndarray, name: str, strength: float | None, seed: int = 0) -> np.ndarray:
    """``x`` (uint8 ``(N, 48, 48)``) with one perturbation applied, as a new uint8 array.

    The random draws depend on ``seed`` and the image's index only, so each face gets the same
    rotation sign, shift direction or square position at every strength: along a curve only the
    strength changes. A shift is rounded to whole pixels (within 0.5 px per axis of the stated
    distance) so that it does not also blur the face by interpolation.
    """
    strength = _strength(strength)
    spec = _spec(name, strength)
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (S, S):
        raise ValueError(f"perturb takes uint8 (N, {S}, {S}) faces, not {x.dtype} {x.shape}")
    if strength == spec.identity:
        return x.copy()
    import cv2

    rng = np.random.default_rng(seed)
    n, f = len(x), x.astype(np.float32)
    if name == "brightness":
        out = f * strength
    elif name == "contrast":
        mean = f.mean(axis=(1, 2), keepdims=True)
        out = mean + strength * (f - mean)
    elif name == "blur":
        out = np.array([cv2.GaussianBlur(face, (0, 0), float(strength)) for face in x])
    elif name == "jpeg":
        q, gray = [cv2.IMWRITE_JPEG_QUALITY, int(strength)], cv2.IMREAD_GRAYSCALE
        out = np.array([cv2.imdecode(cv2.imencode(".jpg", face, q)[1], gray) for face in x])
    elif name == "rotation":
        signs = rng.choice((-1, 1), size=n)
        out = np.array([_warp(face, s * strength, 1.0) for face, s in zip(x, signs, strict=True)])
    elif name == "scale":
        out = np.array([_warp(face, 0.0, strength) for face in x])
    elif name == "shift":
        theta = rng.uniform(0, 2 * np.pi, size=n)
        p = int(np.ceil(strength))
        dx, dy = (p + np.rint(strength * trig(theta)).astype(int) for trig in (np.cos, np.sin))
        padded = np.pad(x, ((0, 0), (p, p), (p, p)), mode="edge")
        out = np.array([padded[i, dy[i] : dy[i] + S, dx[i] : dx[i] + S] for i in range(n)])
    else:  # occlusion: a square always fully inside the 48 px image
        side = int(strength)
        top, left = rng.integers(0, S - side + 1, size=(2, n))
        out = x.copy()
        for i in range(n):
            out[i, top[i] : top[i] + side, left[i] : left[i] + side] = OCCLUSION_FILL
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(x.shape)


def _choose(perturbations) -> dict[str, tuple]:
    """``None`` (all), names, or ``{name: strengths}`` → ``{name: strengths}``, checked."""
    if isinstance(perturbations, str):
        perturbations = [perturbations]
    if not isinstance(perturbations, Mapping):
        perturbations = {n: _spec(n).levels for n in perturbations or PERTURBATIONS}
    chosen = {n: tuple(levels) for n, levels in perturbations.items()}
    for n, levels in chosen.items():
        for s in levels:
            _spec(n, s)  # a ValueError for a wrong name or strength, before any work
    return chosen


def table(
    classifier,
    x: np.ndarray,
    y: np.ndarray,
    perturbations: Mapping[str, Sequence] | Sequence[str] | None = None,
    tta: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    progress: bool = True,
):
    """Accuracy and its 95 % bootstrap interval at every strength of every perturbation.

    One row per (perturbation, strength) in :data:`PERTURBATIONS` order: ``perturbation,
    strength`` (NaN for jpeg's "none")``, label, accuracy, low, high, images``. The unperturbed faces are classified once
    and that prediction is every perturbation's identity row, so all curves meet one baseline.
    One ``seed`` draws the perturbations and the bootstrap resamples for every row, so rows
    differ by their images, not by resampling; with the defaults the unperturbed row's interval
    is the one :func:`fer.evaluation.metrics.summary` gives the same predictions. ``classifier`` needs only ``predict_proba(faces, tta=)``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from fer.evaluation.metrics import bootstrap_ci

    chosen = _choose(perturbations)
    x, y = np.asarray(x), np.asarray(y)
    jobs = sum(s != PERTURBATIONS[n].identity for n, levels in chosen.items() for s in levels)
    bar = tqdm(total=jobs + 1, desc="robustness", unit="pass", disable=not progress)

    def scored(faces: np.ndarray) -> tuple[float, float, float]:
        pred = classifier.predict_proba(faces, tta=tta).argmax(axis=1)
        bar.update()
        return bootstrap_ci(y, pred, n_boot=n_boot, seed=seed)

    base, rows = scored(x), []
    for name, levels in chosen.items():
        spec = PERTURBATIONS[name]
        for s in spec.levels:  # plot order, the identity always in it
            if s == spec.identity:
                acc = base
            elif s in levels:
                bar.set_postfix_str(f"{name} {spec.label(s)}")
                acc = scored(perturb(x, name, s, seed))
            else:
                continue
            rows.append((name, s, spec.label(s), *acc, len(y)))
    bar.close()
    return pd.DataFrame(rows, columns=COLUMNS)


def is_identity(table) -> np.ndarray:
    """True for a table's unperturbed rows (one per perturbation, all the same prediction)."""
    pairs = zip(table["perturbation"], table["strength"], strict=True)
    return np.array([_strength(s) == PERTURBATIONS[p].identity for p, s in pairs])


def summary(table) -> dict[str, Any]:
    """The table as plain floats for a metrics file: the baseline, every accuracy by label, and
    each perturbation's worst strength with its drop from the baseline, biggest drop first."""
    base = table[is_identity(table)].iloc[0]
    baseline = float(base["accuracy"])
    per: dict[str, dict[str, float]] = {}
    worst: dict[str, dict[str, Any]] = {}
    for name, part in table.groupby("perturbation", sort=False):
        per[str(name)] = {str(r.label): float(r.accuracy) for r in part.itertuples()}
        low = part.loc[part["accuracy"].idxmin()]
        acc = float(low["accuracy"])
        worst[str(name)] = {"label": str(low["label"]), "accuracy": acc, "drop": baseline - acc}
    return {
        "images": int(base["images"]),
        "baseline": baseline,
        "baseline_ci": [float(base["low"]), float(base["high"])],
        "perturbations": per,
        "worst": dict(sorted(worst.items(), key=lambda kv: -kv[1]["drop"])),
    }


def text(table) -> str:
    """The table as the terminal shows it: the unchanged accuracy once, then one line per
    perturbation with the accuracy (%) at each strength."""
    base = table[is_identity(table)].iloc[0]
    lines = [f"accuracy (%) under changes to the face crops; unchanged: {100 * base['accuracy']:.1f} "
             f"[{100 * base['low']:.1f}, {100 * base['high']:.1f}] over {int(base['images']):,} faces"]
    width = max(map(len, PERTURBATIONS))
    for name, part in table[~is_identity(table)].groupby("perturbation", sort=False):
        cells = "  ".join(f"{r.label} {100 * r.accuracy:.1f}" for r in part.itertuples())
        lines.append(f"  {name:<{width}}  {cells}")
    return "\n".join(lines)
