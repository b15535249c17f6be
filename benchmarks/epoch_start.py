"""Seconds from the start of each epoch to its first training step, with tf.data autotuning on
and off (the project's pipeline turns it off).

Keras builds a new tf.data iterator every epoch. With autotuning on, tearing the previous one
down waited for the autotuner's thread to wake up (up to a minute, with the CPU idle), so
epochs of the same work took 45-95 s in a 2-core run. This trains the cpu-profile main model
for a few short epochs in each mode, in one process, and prints the gaps and the wall time.
Usage: python benchmarks/epoch_start.py [--images 12800] [--epochs 5]   (generated images)
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(autotune: bool, images: int, epochs: int) -> tuple[list[float], float]:
    import keras
    import numpy as np
    import tensorflow as tf

    from fer.config import TrainConfig
    from fer.training import fit as train

    class StartGap(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.gaps, self.first = [], None

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.first = time.time(), None

        def on_train_batch_begin(self, batch, logs=None):
            if self.first is None:
                self.first = time.time()
                self.gaps.append(self.first - self.start)

    make_dataset = train.make_dataset

    def with_autotune(*args, **kwargs):
        options = tf.data.Options()
        options.autotune.enabled = autotune
        return make_dataset(*args, **kwargs).with_options(options)

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (images, 48, 48), dtype=np.uint8), rng.integers(0, 7, images)
    cfg = TrainConfig(hp={"stem_width": 32, "widths": [32, 64, 128, 256], "blocks": [1, 2, 2, 1], "crop": 40},
                      batch_size=128, epochs=epochs, precision="auto")
    gap = StartGap()
    train.make_dataset = with_autotune
    try:
        start = time.time()
        train.fit((x, y), (x[:1000], y[:1000]), cfg, callbacks=[gap], verbose=0)
        return gap.gaps, time.time() - start
    finally:
        train.make_dataset = make_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=12800)
    p.add_argument("--epochs", type=int, default=5)
    a = p.parse_args()
    for autotune in (True, False):
        gaps, wall = run(autotune, a.images, a.epochs)
        print(f"autotune {'on ' if autotune else 'off'}: start gaps {[round(g, 1) for g in gaps]} s "
              f"(median {statistics.median(gaps):.1f}, sum {sum(gaps):.1f}); {a.epochs} epochs in {wall:.0f} s", flush=True)


if __name__ == "__main__":
    main()
