"""Per-call cost of a Keras model's inference: ``Classifier.forward`` against ``predict_on_batch``.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/teacher_forward.py [--model fer/weights/main.keras]
        [--batch 1 128] [--calls 20] [--repeats 5]

An online distillation teacher (``distill_online``) is called once per training batch from the
host pipeline, so what a call costs beyond the network's own arithmetic decides how fast the
student trains. For each batch size the two ways are timed alternately, ``--calls`` calls per
round after a warm-up, ``--repeats`` rounds; it prints the median milliseconds per call, their
ratio and the largest difference between the two outputs. Random 0-255 images; any backend
(under TensorFlow ``forward`` is a traced ``tf.function``, under JAX a jitted ``stateless_call``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_call_ms(fn, batch, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(batch)
    return (time.perf_counter() - start) / calls * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .keras file (default: the bundled main model)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 128])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import keras
    import numpy as np

    from fer.inference.predict import load_classifier

    clf = load_classifier(args.model, backend="keras")
    model = clf.model
    print(f"{clf.path.name}: {model.count_params():,} params, Keras {keras.__version__} on {keras.backend.backend()}")
    rng = np.random.default_rng(0)
    for size in args.batch:
        views = rng.uniform(0, 255, (size, clf.crop, clf.crop)).astype("float32")
        ways = {
            "predict_on_batch": lambda v: np.asarray(model.predict_on_batch(v[..., None])),
            "Classifier.forward": clf.forward,
        }
        outputs = {name: fn(views) for name, fn in ways.items()}  # warm-up (compilation)
        diff = float(np.abs(outputs["predict_on_batch"] - outputs["Classifier.forward"]).max())
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(args.repeats):
            for name, fn in ways.items():
                times[name].append(per_call_ms(fn, views, args.calls))
        med = {name: statistics.median(t) for name, t in times.items()}
        print(f"batch {size:4d}: " + ", ".join(f"{n} {m:8.2f} ms" for n, m in med.items())
              + f"; ratio {med['predict_on_batch'] / med['Classifier.forward']:.2f}; max |diff| {diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
