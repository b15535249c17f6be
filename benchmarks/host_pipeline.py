"""How fast the ``host`` pipeline (NumPy/OpenCV, for Keras on JAX/PyTorch) makes training batches.

    .venv/bin/python benchmarks/host_pipeline.py [--batches 100] [--repeats 5] [--workers 1 2]

Generated 48x48 faces, the full profile's augmentation and MixUp, batch 128, crop 44. For each
worker count, one epoch of ``--batches`` batches is drawn through Keras' own PyDataset enqueuer
(what ``model.fit`` uses) ``--repeats`` times; it prints the median batches/s and images/s.
For comparison: on an H200 the full model's step took 4.6 ms under JAX, so a GPU run needs 217
batches/s. Worker counts are measured interleaved, so background load hits each alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def epoch_seconds(batches) -> float:
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(batches, shuffle=False)
    start = time.perf_counter()
    adapter.on_epoch_begin()
    for _ in adapter.get_numpy_iterator():
        pass
    adapter.on_epoch_end()
    return time.perf_counter() - start


def main() -> int:
    import numpy as np

    from fer.config import config_from_profile, load_profile
    from fer.training import inputs as pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    cfg = config_from_profile(load_profile("full"))
    rng = np.random.default_rng(0)
    n = args.batches * cfg.batch_size
    x, y = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n)
    times: dict[int, list[float]] = {w: [] for w in args.workers}
    for _ in range(args.repeats):
        for w in args.workers:
            times[w].append(epoch_seconds(pipeline.HostBatches(x, y, cfg, 44, workers=w)))
    for w, ts in times.items():
        per_s = args.batches / statistics.median(ts)
        print(f"workers {w}: {per_s:6.1f} batches/s, {per_s * cfg.batch_size:7.0f} images/s "
              f"(median of {len(ts)}, range {args.batches / max(ts):.1f}-{args.batches / min(ts):.1f} batches/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
