"""One process of a small data-parallel fit, for tests/e2e/test_train_parallel.py (not a test).

Trains a tiny ``lite`` network on generated faces through ``fer.training.parallel.plan`` and
``fer.training.fit.fit`` and writes the returned model's weights to ``--out`` (``.npz``). Augmentation,
MixUp and dropout are off, so every way of splitting the same global batches (one device, two
devices of one process, two processes) computes the same steps, up to rounding.
``--stop-after E`` interrupts the run after epoch ``E`` (its backup saved), as a kill would.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


class Interrupted(Exception):
    pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--run-dir")
    p.add_argument("--devices")
    p.add_argument("--coordinator")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--stop-after", type=int)
    args = p.parse_args(argv)

    from fer.training import parallel

    plan = parallel.plan(args.devices, args.coordinator, args.num_processes, args.process_id)
    import keras

    from fer.config import TrainConfig
    from fer.training.fit import fit

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 48, 48), dtype=np.uint8)
    y = np.arange(96) % 7
    x[np.arange(96), y * 6, :] = 255  # a learnable mark: a bright row per class
    val = (x[:37], y[:37])  # 37 faces: no batch split between 2 devices fills them
    cfg = TrainConfig(arch="lite", hp={"crop": 48, "stem_width": 8, "widths": (8, 16), "dropout": 0.0},
                      epochs=args.epochs, batch_size=16, lr=3e-3, warmup_epochs=0, precision="float32",
                      flip=False, rotation=0.0, zoom=0.0, shift=0.0, erasing=0.0, mixup=0.0, label_smoothing=0.0,
                      pipeline="host")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if args.stop_after is not None and epoch + 1 >= args.stop_after:
                raise Interrupted(f"stopped after epoch {epoch + 1}")

    try:
        model, history = fit((x, y), val, cfg, run_dir=args.run_dir, verbose=0, plan=plan, callbacks=[Stop()])
    except Interrupted as err:
        print(err)
        return 3
    np.savez(args.out, *[np.asarray(w) for w in model.get_weights()],
             devices=np.array(len(plan.devices) or 1), val_accuracy=np.array(history["val_accuracy"]))
    print(f"process {plan.process}: {plan.describe()}, val_accuracy {history['val_accuracy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
