"""Training images/s of each architecture on this machine (float32 vs bfloat16, batch sizes).

Runs the real ``fer.training.fit`` input pipeline (augmentation included) on random 48×48 images and
times ``steps`` training steps after ``warmup`` steps; repeats ``repeats`` times and prints the
median. Usage: python benchmarks/train_throughput.py [--arch resnet lite] [--precision float32 mixed_bfloat16]
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(arch, hp, precision, batch, steps, warmup, repeats):
    import keras
    import numpy as np

    from fer.config import TrainConfig
    from fer.devices import set_precision
    from fer.training import fit as train
    from fer.training import inputs as pipeline

    cfg = TrainConfig(arch=arch, hp=hp, batch_size=batch, precision=precision, epochs=1)
    set_precision(precision)
    from fer.training import networks

    model = networks.build(arch, hp)
    crop = model.input_shape[1]
    train.compile_model(model, cfg, steps_per_epoch=100)
    rng = np.random.default_rng(0)
    n = batch * (steps + warmup)
    x = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    y = rng.integers(0, 7, n)
    ds = pipeline.make_dataset(x, y, cfg, crop, training=True)
    rates = []
    for _ in range(repeats):
        it = iter(ds)
        for _ in range(warmup):
            model.train_on_batch(*next(it))
        t = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(*next(it))
        rates.append(steps * batch / (time.perf_counter() - t))
    keras.mixed_precision.set_global_policy("float32")
    return {"arch": arch, "hp": hp, "params": model.count_params(), "precision": precision,
            "batch": batch, "crop": crop, "img_per_s": round(statistics.median(rates), 1),
            "runs": [round(r, 1) for r in rates]}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", nargs="+", default=["baseline", "resnet", "lite"])
    p.add_argument("--precision", nargs="+", default=["float32", "mixed_bfloat16"])
    p.add_argument("--batch", nargs="+", type=int, default=[64])
    p.add_argument("--hp", default="{}", help="JSON architecture hyperparameters")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    for arch in a.arch:
        for prec in a.precision:
            for b in a.batch:
                print(json.dumps(measure(arch, json.loads(a.hp), prec, b, a.steps, a.warmup, a.repeats)), flush=True)


if __name__ == "__main__":
    main()
