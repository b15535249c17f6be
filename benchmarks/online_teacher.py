"""Training speed of online distillation with the teacher in the host pipeline or in the train step.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/online_teacher.py [--teacher fer/weights/main.keras]
        [--student lite|member] [--steps 24] [--repeats 3] [--batch 128]

``TrainConfig.online_teacher``: ``host`` labels each finished batch in the host pipeline
(``HostBatches`` calls ``Classifier.forward``, then the batch goes to the device), ``step`` runs
the teacher inside the student's compiled train step (``fer.training.distill.teach_in_step``). Both train
the same student on ``--steps`` batches of random 0-255 faces per epoch, with the same host
augmentation: ``lite``, the 92 k lite (widths 44-88-176, the shipped lite's) with MixUp 0.2, or
``member``, the 1.6 M ResNet of the ensemble's members (the ``cpu`` profile's net, no MixUp as
in its recipe). The two placements alternate,
``--repeats`` rounds of three epochs each, and the first epoch of each run (compilation) is
left out. Prints the median milliseconds per training step of each and their ratio.
Any backend; the teacher is a float32 Keras model in both places, as in training
(``fer.training.distill.load_teacher``; until 2026-12-06 the ``host`` teacher was a LiteRT copy).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="fer/weights/main.keras")
    parser.add_argument("--student", choices=["lite", "member"], default="lite")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()

    import keras
    import numpy as np

    from fer import config
    from fer.training import fit as train

    class Times(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append(time.perf_counter() - self.start)

    rng = np.random.default_rng(0)
    n = args.steps * args.batch
    x = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    y = rng.integers(0, 7, n)
    per_step: dict[str, list[float]] = {"host": [], "step": []}
    if args.student == "lite":  # the shipped lite's widths, as in params/cpu-lite-hp.json
        student = {"arch": "lite", "hp": json.loads((config.PARAMS_DIR / "cpu-lite-hp.json").read_text()), "mixup": 0.2}
    else:  # the cpu profile's main net, as in params/cpu.yaml
        net = config.load_profile("cpu")["main"]
        student = {"arch": net["arch"], "hp": net["hp"], "mixup": 0.0}
    for _ in range(args.repeats):
        for where in per_step:
            cfg = config.TrainConfig(**student, epochs=3, batch_size=args.batch, teacher=args.teacher, distill=0.8,
                                    distill_online=True, online_teacher=where, pipeline="host")
            timer = Times()
            timer.seen = []
            _, history = train.fit((x, y), None, cfg, callbacks=[timer], verbose=0)
            assert history["online_teacher"] == where
            per_step[where] += [s / args.steps * 1000 for s in timer.seen[1:]]
    med = {k: statistics.median(v) for k, v in per_step.items()}
    print(f"backend {keras.backend.backend()}, student {args.student}, teacher {args.teacher}, batch {args.batch}, "
          f"{args.steps} steps an epoch")
    for where, ms in med.items():
        print(f"  {where:5s} {ms:7.1f} ms/step  (epochs: {', '.join(f'{v:.0f}' for v in per_step[where])})")
    print(f"  host / step = {med['host'] / med['step']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
