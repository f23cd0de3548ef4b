from pathlib import Path

import numpy as np
import pytest

from labelwise.data.samples import Samples
from labelwise.data.splits import train_val_split
from labelwise.errors import ConfigError, DataError
from labelwise.labels import LabelSpace


def _samples(targets, task):
    names = tuple(f"l{i}" for i in range(targets.shape[1]))
    return Samples([Path(f"{i}.png") for i in range(len(targets))], targets, LabelSpace(names, task))


def test_multilabel_split_keeps_each_label_share_including_rare_ones():
    rng = np.random.default_rng(0)
    freq = np.array([0.5, 0.2, 0.05, 0.02])
    targets = (rng.random((1000, 4)) < freq).astype(np.uint8)
    s = _samples(targets, "multilabel")
    tr, va = train_val_split(s, 0.2, seed=3)
    assert abs(len(va) - 200) <= 5 and len(set(tr) | set(va)) == 1000 and not set(tr) & set(va)
    share_all = targets.mean(0)
    share_val = targets[va].mean(0)
    assert np.all(np.abs(share_val - share_all) <= 0.01 + 0.1 * share_all)
    assert targets[va].sum(0).min() >= 1  # the rarest label is present in validation
    empty = targets.sum(1) == 0
    assert abs(empty[va].mean() - empty.mean()) < 0.02


def test_multiclass_split_is_stratified_and_deterministic():
    y = np.repeat(np.arange(5), [400, 300, 200, 80, 20])
    targets = np.eye(5, dtype=np.uint8)[y]
    s = _samples(targets, "multiclass")
    tr, va = train_val_split(s, 0.25, seed=7)
    counts = np.bincount(y[va], minlength=5)
    np.testing.assert_allclose(counts, [100, 75, 50, 20, 5], atol=1)
    tr2, va2 = train_val_split(s, 0.25, seed=7)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    _, va3 = train_val_split(s, 0.25, seed=8)
    assert not np.array_equal(va, va3)


def test_bad_split_arguments():
    s = _samples(np.eye(2, dtype=np.uint8), "multiclass")
    with pytest.raises(ConfigError, match="--val-split"):
        train_val_split(s, 1.5, 0)
    with pytest.raises(DataError, match="too few"):
        train_val_split(s, 0.1, 0)


def test_validation_share_is_capped_for_large_sets_unless_given():
    from labelwise.data.splits import AUTO_VAL_MAX, auto_val_split

    assert auto_val_split(None, 1000) == 0.2
    assert auto_val_split(None, 25_000) == 0.2
    assert round(60_000 * auto_val_split(None, 60_000)) == AUTO_VAL_MAX == 5000  # Fashion-MNIST: 55,000 train
    assert auto_val_split(0.3, 60_000) == 0.3  # --val-split as given
