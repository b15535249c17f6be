"""Which crop framing makes the bundled classifier see faces as FER2013 framed them.

    .venv/bin/python benchmarks/crop_framing.py [--model PATH] [--frames N] [--limit N] [--tilt DEG]

FER2013 crops are tight and centred: roughly eyebrows to chin, little background. Each
candidate is a margin (crop side = detector box side x (1 + margin)), a vertical shift (centre
moved down by shift x side) and whether the eyes are levelled (``rotate``); the grid is margins
-0.1..0.4 x shifts -0.15..0.1 x rotate on/off (72 candidates). For each one this measures:

* **FER2013-like framing** (where the true framing is known): every PublicTest face (3,589;
  ``--limit N`` takes a fixed random subset, ``--seed``) is upscaled 48 -> 192 px with
  ``INTER_CUBIC`` and set in a 384 x 384 canvas by replicating its edge pixels 96 px on every
  side (``cv2.BORDER_REPLICATE``; ``--fill gray`` uses flat 128 grey instead), so the detector
  sees a face with surroundings and the original 48 x 48 image sits at (96, 96)-(288, 288).
  ``--tilt DEG`` then turns each canvas about its centre by +DEG or -DEG degrees (the sign drawn
  per face with seed ``--seed`` + 1), so the true framing is a turned square: this is what
  levelling the eyes is for, and what the untilted check cannot see (there, PublicTest's own
  head tilts are the "true" framing, so levelling is penalised by construction).
  BlazeFace (``fer.inference.faces.detect``) runs once per canvas; each candidate then crops the largest
  face and the classifier labels the crops. Reported: the detection rate; accuracy on the
  detected faces next to the ceiling (the same faces' original 48 x 48 images) and an oracle
  (the canvas cropped exactly where the original sits, turned back when tilted: what the
  resampling alone costs); the paired gain over the current default with a 95 % paired bootstrap interval
  (``--boot`` resamples of the detected images, seed 0); and the mean IoU between the crop's
  square (rotated when levelling, in canvas coordinates) and the original's square, a
  model-free measure of how close the framing is to FER2013's.
* **Photos**: on the six labelled ``shared/media`` photos, how many get their expected label
  and the mean probability of that label.
* **Video**: on ``woman2.mp4`` (every 3rd frame), how often the label changes between
  consecutive frames (a framing that fits gives steadier labels).

Decision rule (fixed before the measurement was run):

1. Eligible candidates label at least as many of the six photos as expected as the current
   default (``fer.inference.faces.MARGIN``, ``fer.inference.faces.SHIFT``, ``rotate=True``) does.
2. The best eligible candidate has the highest FER2013-like accuracy; ties (the same number
   of correct crops) go to fewer video label flips, then to the higher mean IoU.
3. It replaces the default only if its paired bootstrap 95 % interval of the accuracy gain
   over the default lies entirely above zero; otherwise the default stays.

Amendment, made after the first full run and stated as such: that run's winner had
``rotate=False`` (margin 0.3, shift -0.05), ahead of the same framing levelled by 0.7 points,
while ``--tilt 20`` and ``--tilt 30`` runs (``--limit 1200``) showed that framing unlevelled
losing 3.3 and 9.9 points against it levelled on turned faces. So step 2
considers only ``rotate=True`` candidates unless ``--allow-unlevelled`` is given (for a run
where a ``--tilt`` check shows unlevelled crops are no worse on tilted faces); ``rotate=False``
rows are still measured and printed.

The interval is for the one pair (best, default) and does not correct for picking the best
of 72 correlated candidates, so a winner just clearing zero should be read with that in mind.
The chosen default is ``fer.inference.faces.MARGIN``/``SHIFT``; the last run is in
``docs/evaluation.md`` ("Crop framing").
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MARGINS = (-0.1, 0.0, 0.1, 0.2, 0.3, 0.4)
SHIFTS = (-0.15, -0.1, -0.05, 0.0, 0.05, 0.1)
UPSCALE = 192  # side of the upscaled FER2013 face in the canvas
BORDER = 96  # surroundings on every side: the canvas is 384 x 384


def render(face48: np.ndarray, fill: str, tilt: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A FER2013 face as a grey "photo" (upscaled, ``BORDER`` px of surroundings, turned by
    ``tilt`` degrees about the canvas centre) and the corners of the original in it."""
    import cv2

    big = cv2.resize(face48, (UPSCALE, UPSCALE), interpolation=cv2.INTER_CUBIC)
    if fill == "replicate":
        canvas = cv2.copyMakeBorder(big, *(BORDER,) * 4, cv2.BORDER_REPLICATE)
    else:
        canvas = cv2.copyMakeBorder(big, *(BORDER,) * 4, cv2.BORDER_CONSTANT, value=128)
    lo, hi = BORDER, BORDER + UPSCALE
    square = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]], np.float64)
    if tilt:
        side = canvas.shape[0]
        m = cv2.getRotationMatrix2D((side / 2.0, side / 2.0), tilt, 1.0)
        canvas = cv2.warpAffine(
            canvas, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        square = square @ m[:, :2].T + m[:, 2]
    return canvas, square


def crop_corners(face, margin: float, shift: float, rotate: bool) -> np.ndarray:
    """The four corners (image coordinates) of the square ``fer.inference.faces.crop`` cuts out."""
    import cv2

    x, y, w, h = face.box
    side = max(w, h) * (1.0 + margin)
    cx, cy = x + w / 2.0, y + h / 2.0 + shift * side
    angle = 0.0
    if rotate and face.keypoints is not None:
        (ax, ay), (bx, by) = sorted(map(tuple, face.keypoints[:2]))
        angle = math.degrees(math.atan2(by - ay, bx - ax))
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[:, 2] += (side / 2.0 - cx, side / 2.0 - cy)
    inv = cv2.invertAffineTransform(m)
    patch = np.array([[0, 0], [side, 0], [side, side], [0, side]], np.float64)
    return patch @ inv[:, :2].T + inv[:, 2]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two convex quadrilaterals given by their corners."""
    import cv2

    a, b = a.astype(np.float32), b.astype(np.float32)
    inter, _ = cv2.intersectConvexConvex(a, b)
    return float(inter / (abs(cv2.contourArea(a)) + abs(cv2.contourArea(b)) - inter))


def paired_bootstrap(correct: np.ndarray, ref: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(K, 2)`` 95 % intervals of accuracy(k) - accuracy(ref), resampling images in pairs."""
    rng = np.random.default_rng(seed)
    diff = correct.astype(np.float32) - correct[:, [ref]].astype(np.float32)
    n = len(diff)
    gains = np.empty((n_boot, diff.shape[1]), np.float32)
    for i in range(0, n_boot, 250):  # counts per image, 250 resamples at a time
        b = min(250, n_boot - i)
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(b)])
        gains[i : i + b] = counts.astype(np.float32) @ diff / n
    return np.percentile(gains, [2.5, 97.5], axis=0).T


def main() -> None:
    import cv2

    from fer import CLASSES, load_classifier
    from fer import data as fer_data
    from fer.config import SHARED_DIR
    from fer.inference import faces

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model file (default: the bundled one)")
    parser.add_argument("--frames", type=int, default=150, help="video frames to use (every 3rd)")
    parser.add_argument(
        "--fer", default=str(SHARED_DIR / "data" / "fer2013.zip"), help="FER2013 source"
    )
    parser.add_argument("--limit", type=int, help="PublicTest faces to use (default: all 3,589)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    parser.add_argument(
        "--fill", choices=("replicate", "gray"), default="replicate", help="canvas surroundings"
    )
    parser.add_argument(
        "--tilt",
        type=float,
        default=0.0,
        help="turn each canvas by +-TILT degrees (sign drawn per face, seed + 1)",
    )
    parser.add_argument("--boot", type=int, default=2000, help="paired bootstrap resamples")
    parser.add_argument(
        "--allow-unlevelled",
        action="store_true",
        help="let rotate=False candidates win (see the amendment to the rule)",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    media = SHARED_DIR / "media"
    clf = load_classifier(args.model)
    grid = list(itertools.product(MARGINS, SHIFTS, (True, False)))
    default = (
        faces.MARGIN,
        faces.SHIFT,
        inspect.signature(faces.crop).parameters["rotate"].default,
    )
    if default not in grid:
        grid.append(default)
    ref = grid.index(default)

    # ---- the six photos and the video
    photos = []
    for p in sorted(media.glob("*.jpg")):
        image = cv2.imread(str(p))
        expected = p.stem.split("_")[-1]
        photos.append((faces.to_gray(image), faces.detect(image)[0], CLASSES.index(expected)))
    expected = np.array([e for *_, e in photos])
    cap, video = cv2.VideoCapture(str(media / "woman2.mp4")), []
    i = 0
    while len(video) < args.frames:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 3 == 0:
            found = faces.detect(frame)
            if found:
                video.append((faces.to_gray(frame), found[0]))
        i += 1

    # ---- FER2013-like: render, detect once per image
    x, y = fer_data.load(args.fer)["public_test"]
    if args.limit and args.limit < len(x):
        pick = np.sort(np.random.default_rng(args.seed).choice(len(x), args.limit, replace=False))
        x, y = x[pick], y[pick]
    tilts = args.tilt * np.random.default_rng(args.seed + 1).choice([-1.0, 1.0], len(x))
    canvases, truths, found, oracles = [], [], [], []
    for face48, tilt in zip(x, tilts, strict=True):
        canvas, truth = render(face48, args.fill, tilt)
        hits = faces.detect(canvas)
        canvases.append(canvas)
        truths.append(truth)
        found.append(hits[0] if hits else None)
        # the original's own square, with "eyes" along its top edge so that levelling undoes the tilt
        t, c = math.radians(tilt), BORDER + UPSCALE / 2.0
        eyes = [
            [c - 50 * math.cos(t), c + 50 * math.sin(t)],
            [c + 50 * math.cos(t), c - 50 * math.sin(t)],
        ]
        oracles.append(
            faces.Face((BORDER, BORDER, UPSCALE, UPSCALE), 1.0, np.array(eyes + [[c, c]] * 4))
        )
    det = np.array([f is not None for f in found])
    xd, yd = x[det], y[det]
    cd = [c for c, d in zip(canvases, det, strict=True) if d]
    td = [t for t, d in zip(truths, det, strict=True) if d]
    fd = [f for f in found if f is not None]
    ceiling_all = float((clf.predict_proba(x).argmax(1) == y).mean())
    ceiling_det = float((clf.predict_proba(xd).argmax(1) == yd).mean())
    od = [o for o, d in zip(oracles, det, strict=True) if d]
    oracle_crops = np.stack(
        [faces.crop(c, o, margin=0.0, shift=0.0, rotate=True) for c, o in zip(cd, od, strict=True)]
    )
    oracle_acc = float((clf.predict_proba(oracle_crops).argmax(1) == yd).mean())
    print(
        f"model {clf.path.name} ({clf.backend}); {len(photos)} photos, {len(video)} video frames; "
        f"FER2013-like: {len(x)} PublicTest faces, fill {args.fill}, tilt +-{args.tilt:g} deg, "
        f"{det.sum()} detected ({det.mean():.1%})"
    )
    print(
        f"accuracy on the detected faces: original 48x48 {ceiling_det:.4f} (all {len(x)}: {ceiling_all:.4f}), "
        f"oracle framing {oracle_acc:.4f}"
    )

    rows, correct = [], []
    for margin, shift, rotate in grid:
        kw = {"margin": margin, "shift": shift, "rotate": rotate}
        crops = np.stack([faces.crop(c, f, **kw) for c, f in zip(cd, fd, strict=True)])
        correct.append(clf.predict_proba(crops).argmax(1) == yd)
        overlap = float(
            np.mean(
                [
                    iou(crop_corners(f, margin, shift, rotate), t)
                    for f, t in zip(fd, td, strict=True)
                ]
            )
        )
        probs = clf.predict_proba(np.stack([faces.crop(g, f, **kw) for g, f, _ in photos]))
        ok = int((probs.argmax(1) == expected).sum())
        p_exp = float(probs[np.arange(len(photos)), expected].mean())
        vlabels = clf.predict_proba(np.stack([faces.crop(g, f, **kw) for g, f in video])).argmax(1)
        flips = float((vlabels[1:] != vlabels[:-1]).mean())
        labels = " ".join(CLASSES[k][:3] for k in probs.argmax(1))
        rows.append(
            {
                "margin": margin,
                "shift": shift,
                "rotate": rotate,
                "acc": float(correct[-1].mean()),
                "n_ok": int(correct[-1].sum()),
                "iou": overlap,
                "photos": ok,
                "p_exp": p_exp,
                "flips": flips,
                "labels": labels,
            }
        )
    correct = np.stack(correct, axis=1)
    ci = paired_bootstrap(correct, ref, args.boot)

    head = (
        f"{'margin':>6s} {'shift':>6s} {'rotate':>6s} {'FER acc':>7s} {'gain vs default [95% CI]':>26s} "
        f"{'IoU':>5s} {'photos':>6s} {'p(exp)':>6s} {'flips':>5s}  labels"
    )
    print(head)
    order = sorted(
        range(len(rows)), key=lambda k: (-rows[k]["n_ok"], rows[k]["flips"], -rows[k]["iou"])
    )
    for k in order:
        r = rows[k]
        gain = r["acc"] - rows[ref]["acc"]
        mark = "  <- default" if k == ref else ""
        print(
            f"{r['margin']:>6.1f} {r['shift']:>6.2f} {r['rotate']!s:>6s} {r['acc']:>7.4f} "
            f"{gain:>+8.4f} [{ci[k, 0]:+.4f}, {ci[k, 1]:+.4f}] {r['iou']:>5.3f} "
            f"{r['photos']:>4d}/{len(photos)} {r['p_exp']:>6.3f} {r['flips']:>5.3f}  {r['labels']}{mark}"
        )
    best_iou = max(range(len(rows)), key=lambda k: rows[k]["iou"])
    print(
        f"highest mean IoU: margin {rows[best_iou]['margin']:.1f} shift {rows[best_iou]['shift']:.2f} "
        f"rotate {rows[best_iou]['rotate']} ({rows[best_iou]['iou']:.3f})"
    )

    eligible = [
        k
        for k in order
        if rows[k]["photos"] >= rows[ref]["photos"] and (rows[k]["rotate"] or args.allow_unlevelled)
    ]
    best = eligible[0]
    b = rows[best]
    verdict = "change the default" if best != ref and ci[best, 0] > 0 else "keep the default"
    print(
        f"rule: best eligible candidate margin {b['margin']:.1f} shift {b['shift']:.2f} rotate {b['rotate']} "
        f"(acc {b['acc']:.4f}, gain {b['acc'] - rows[ref]['acc']:+.4f} "
        f"[{ci[best, 0]:+.4f}, {ci[best, 1]:+.4f}], photos {b['photos']}/{len(photos)}) -> {verdict}"
    )
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
