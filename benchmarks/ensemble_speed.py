"""What averaging costs at inference: the shipped ensemble against one of its own members.

The member is taken out of the shipped file (``member_0``), so both run the same weights
through the same code path (LiteRT via a TFLite copy, as the app and CLI use them, or Keras).
Rounds alternate ensemble and member and each reports the median of ``fer.evaluation.speed.latency``
(per-call medians), so a machine that gets busier half-way hurts both alike; the ratio is
computed per round. ``--other model.keras`` times another model in the member's place (e.g. one
larger network trained in place of the ensemble). Usage: python benchmarks/ensemble_speed.py
[--rounds 3] [--backend keras] [--other PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np

    from fer.devices import hardware
    from fer.evaluation import speed
    from fer.inference import runtimes
    from fer.inference.predict import Classifier, load_classifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an ensemble .keras file (default: the bundled main model)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=["litert", "keras"], default="litert")
    parser.add_argument("--other", help="time this model file instead of the ensemble's first member")
    args = parser.parse_args()

    full = load_classifier(args.model, backend="keras")
    members = [layer for layer in full.model.layers if layer.name.startswith("member_")]
    if not members:
        raise SystemExit(f"{full.path} is not an ensemble (no member_<i> layers)")
    single = load_classifier(args.other, backend="keras") if args.other else Classifier(members[0])
    other = Path(args.other).name if args.other else "one member"
    if args.backend == "litert":
        full = Classifier(full.model, runtime=runtimes.LiteRuntime(runtimes.to_tflite(full.model)))
        single = Classifier(single.model, runtime=runtimes.LiteRuntime(runtimes.to_tflite(single.model)))
    faces = np.random.default_rng(0).integers(0, 256, (256, 48, 48), dtype=np.uint8)
    rows: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for name, clf in ((f"ensemble of {len(members)}", full), (other, single)):
            table = speed.latency(clf, faces, batch_sizes=(1, 256))
            for bs in (1, 256):
                rows.setdefault((name, bs), []).append(float(table.loc[bs, "ms_per_image"]))
    hw = hardware()
    print(f"{hw['cpu']} ({hw['cores']} cores), backend {args.backend}, median of {args.rounds} rounds")
    width = max(16, len(other) + 2)
    print(f"{'model':<{width}}{'batch':>6}{'ms/face':>10}{'faces/s':>10}")
    for (name, bs), ms in rows.items():
        med = statistics.median(ms)
        print(f"{name:<{width}}{bs:>6}{med:>10.3f}{1000 / med:>10.0f}")
    for bs in (1, 256):
        ratios = [e / s for e, s in zip(rows[(f"ensemble of {len(members)}", bs)], rows[(other, bs)], strict=True)]
        print(f"batch {bs}: the ensemble takes {statistics.median(ratios):.2f}x {other}'s time per face "
              f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
