"""The real FER2013 copy in ../shared/data: exact counts and known quirks, as its README states.

These figures are what the notebooks and the model card quote; if a loader change alters any of
them, the change is wrong (or the README must be). Skipped when ../shared is not beside the
checkout (a user's machine). Each source is decoded once per session into a temporary cache.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fer import data
from fer.config import CLASSES, SHARED_DIR
from fer.data import audit

ZIP = SHARED_DIR / "data" / "fer2013.zip"
SAMPLE_CSV = SHARED_DIR / "data" / "fer2013_sample.csv"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not ZIP.exists(), reason=f"{ZIP} not present (needs ../shared)"),
]

# shared/data/README.md, "Classes and counts"
TRAIN = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830, "surprise": 3171}
PUBLIC_TEST = {"angry": 467, "disgust": 56, "fear": 496, "happy": 895, "neutral": 607, "sad": 653, "surprise": 415}


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> data.Splits:
    return data.load(ZIP, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def report(splits) -> dict:
    return audit.audit(splits)


def test_splits_and_per_class_counts(splits):
    assert list(splits) == ["train", "public_test"]
    for split, counts in (("train", TRAIN), ("public_test", PUBLIC_TEST)):
        x, y = splits[split]
        assert x.shape == (sum(counts.values()), 48, 48) and x.dtype == np.uint8
        assert dict(zip(CLASSES, np.bincount(y, minlength=7).tolist(), strict=True)) == counts
    assert len(splits["train"][0]) == 28_709 and len(splits["public_test"][0]) == 3_589


def test_known_quirks(report):
    train, test = report["splits"]["train"], report["splits"]["public_test"]
    assert (train["black"], test["black"]) == (11, 1)
    assert (train["repeats"], test["repeats"]) == (1_236, 26)
    assert report["leakage"] == {"public_test": 280}
    assert report["conflicts"] == {"groups": 47, "images": 129}
    assert report["duplicates"] == {"groups": 1_273, "images": 2_805}


def test_clean_removes_black_and_leaked_images_from_train_only(splits):
    cleaned = audit.clean(splits)
    assert cleaned["public_test"] is splits["public_test"]
    after = audit.audit(cleaned)
    assert after["splits"]["train"]["black"] == 0 and after["leakage"] == {"public_test": 0}
    # 11 black + every train copy of the 280 leaked test images (some occur more than once)
    assert 28_709 - 11 - 280 >= len(cleaned["train"][0]) > 28_709 - 11 - 2 * 280


@pytest.mark.skipif(not SAMPLE_CSV.exists(), reason=f"{SAMPLE_CSV} not present")
def test_sample_csv_is_the_same_pixels_and_labels_as_the_zip(splits, tmp_path):
    """The CSV was written from the zip's decoded pixels: every row must match a zip image exactly
    (same split, same class), which also checks the CSV code → class-name mapping."""
    sample = data.load(SAMPLE_CSV, cache_dir=tmp_path)
    assert {s: len(x) for s, (x, _) in sample.items()} == {"train": 1_400, "public_test": 210}
    for split, per_class in (("train", 200), ("public_test", 30)):
        x, y = sample[split]
        assert np.bincount(y, minlength=7).tolist() == [per_class] * 7
        labels_of: dict[bytes, set[int]] = {}
        for img, label in zip(*splits[split], strict=True):
            labels_of.setdefault(hashlib.blake2b(img.tobytes()).digest(), set()).add(int(label))
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            found = labels_of.get(hashlib.blake2b(img.tobytes()).digest())
            assert found is not None, f"{split} row {i}: pixels not in the zip's {split} split"
            assert int(label) in found, f"{split} row {i}: label {CLASSES[label]}, zip says {found}"
