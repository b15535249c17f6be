"""Data, the lowest stage: FER2013 as arrays, where to find it, its audit, and labelled photo sets.

- :mod:`fer.data.fer2013`: ``load(source)`` reads every form FER2013 comes in (Kaggle folders or
  zip, the challenge CSV) into ``{split: (x uint8 (N, 48, 48), y int64)}``; ``synthetic`` makes
  generated faces for tests and the smoke profile.
- :mod:`fer.data.sources`: where the data is (``$FER_DATA``, ``data/raw``, Kaggle) and
  ``load_source``, what notebooks and the CLI call with a profile's ``data_source``.
- :mod:`fer.data.audit`: duplicates, leaks and class balance; ``prepare``, the one cleaning,
  splitting and fingerprinting that a training run, an ensemble and the search share.
- :mod:`fer.data.labelled`: any labelled set of photos, for ``python -m fer evaluate``.
- :mod:`fer.data.ferplus`: FER+ votes (10 annotators per image): ``votes(source)`` gives them
  aligned with ``load(source)``'s arrays; the majority rule, training targets, the FER+ audit.

The names below are the public API (``fer.data.load``, ``fer.data.votes`` and the error).
"""

from fer.data.fer2013 import (
    SPLIT_FOLDERS,
    DataError,
    Splits,
    file_names,
    load,
    source_hash,
    synthetic,
)
from fer.data.ferplus import votes

__all__ = ["SPLIT_FOLDERS", "DataError", "Splits", "file_names", "load", "source_hash", "synthetic", "votes"]
