"""fer.data.audit.prepare on generated data: the one cleaning, validation split and fingerprint
that a training run, an ensemble and a search all start from."""

import numpy as np
import pytest

from fer import data
from fer.data import DataError, audit


@pytest.fixture
def splits():
    """Generated splits with the problems the audit finds: two black training images and three
    training images that are copies of PublicTest ones."""
    s = data.synthetic(n_train=12, n_test=4, seed=3)
    (x, y), (xt, yt) = s["train"], s["public_test"]
    x = x.copy()
    x[[5, 40]] = 0  # black
    x[[7, 20, 33]] = xt[[0, 9, 17]]  # leaked into train
    return {"train": (x, y), "public_test": (xt, yt)}


def _ids(x: np.ndarray) -> set[bytes]:
    return {img.tobytes() for img in x}


def test_prepare_drops_what_the_audit_drops_and_validates_on_public_test(splits):
    report = audit.audit(splits)
    assert report["splits"]["train"]["black"] == 2 and report["leakage"]["public_test"] == 3
    prepared = audit.prepare(splits, seed=0)
    assert prepared.dropped == 2 + 3
    assert len(prepared.train[0]) == len(splits["train"][0]) - 5
    cleaned = audit.audit({"train": prepared.train, "public_test": splits["public_test"]})
    assert cleaned["splits"]["train"]["constant"] == 0 and cleaned["leakage"]["public_test"] == 0
    # exactly what clean() and training_splits() give, and public_test is the validation split
    train, val = audit.training_splits(audit.clean(splits), seed=0)
    np.testing.assert_array_equal(prepared.train[0], train[0])
    np.testing.assert_array_equal(prepared.train[1], train[1])
    assert prepared.val is splits["public_test"] and prepared.validation == "public_test"


def test_without_an_evaluation_split_validation_is_a_seeded_split_of_train(splits):
    only_train = {"train": splits["train"]}
    prepared = audit.prepare(only_train, seed=0)
    assert prepared.validation == "split of train" and prepared.dropped == 2  # the black ones; nothing leaks
    assert len(prepared.train[0]) + len(prepared.val[0]) == len(splits["train"][0]) - 2
    assert not _ids(prepared.train[0]) & _ids(prepared.val[0])
    assert audit.prepare(only_train, seed=1).fingerprint != prepared.fingerprint  # another split
    with pytest.raises(DataError, match="no 'train' split"):
        audit.prepare({"public_test": splits["public_test"]})


def test_the_fingerprint_is_stable_and_changes_with_the_data(splits):
    prepared = audit.prepare(splits, seed=0)
    assert prepared.fingerprint == audit.prepare(splits, seed=0).fingerprint
    assert prepared.fingerprint == audit.data_fingerprint(prepared.train, prepared.val)
    copy = {k: (x.copy(), y.copy()) for k, (x, y) in splits.items()}  # the same pixels elsewhere
    assert audit.prepare(copy, seed=0).fingerprint == prepared.fingerprint
    x, y = copy["train"]
    x[0, 0, 0] ^= 1  # one pixel of one kept training image
    assert audit.prepare(copy, seed=0).fingerprint != prepared.fingerprint
    relabelled = {**splits, "train": (splits["train"][0], (splits["train"][1] + 1) % 7)}
    assert audit.prepare(relabelled, seed=0).fingerprint != prepared.fingerprint
    other = data.synthetic(n_train=12, n_test=4, seed=4)
    assert audit.prepare(other, seed=0).fingerprint != prepared.fingerprint


def test_a_subsample_keeps_the_class_balance_and_names_its_own_data(splits):
    full = audit.prepare(splits, seed=0)
    small = audit.prepare(splits, seed=0, subsample=40)  # of 79
    assert 35 <= len(small.train[0]) <= 45 and small.val is full.val and small.dropped == full.dropped
    assert _ids(small.train[0]) <= _ids(full.train[0])
    share = np.bincount(small.train[1], minlength=7) / np.bincount(full.train[1], minlength=7)
    assert np.all(np.abs(share - len(small.train[0]) / len(full.train[0])) < 0.15), share  # stratified
    assert small.fingerprint != full.fingerprint
    assert audit.prepare(splits, seed=0, subsample=10_000).fingerprint == full.fingerprint  # nothing to cut
