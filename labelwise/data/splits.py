"""Train/validation splits: stratified for multi-class, iterative stratification for multi-label."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from .samples import Samples


def train_val_split(samples: Samples, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), sorted. The same seed gives the same split.

    Multi-class: stratified by class. Multi-label: iterative stratification (Sechidis et al.), so every
    label — rare ones too — keeps its share in both parts; images with no label are a label-set of
    their own and are spread proportionally as well.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    n = len(samples)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise DataError(f"{samples.origin}: {n} images are too few for a validation split of {val_fraction}; "
                        "add images or change --val-split")
    targets = samples.targets
    if samples.labels.multilabel:
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        # An extra "no label" column makes empty images stratified like any other label.
        y = np.concatenate([targets, (targets.sum(1) == 0)[:, None]], axis=1).astype(np.int64)
        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
        train_idx, val_idx = next(splitter.split(np.zeros(n), y))
    else:
        y = targets.argmax(1)
        counts = np.bincount(y, minlength=targets.shape[1])
        present = counts[counts > 0]
        if present.min() >= 2 and n_val >= len(present) and n - n_val >= len(present):
            from sklearn.model_selection import train_test_split

            train_idx, val_idx = train_test_split(np.arange(n), test_size=n_val, random_state=seed, stratify=y)
        else:  # a class with one image cannot be in both parts; fall back to a plain shuffle
            perm = np.random.default_rng(seed).permutation(n)
            train_idx, val_idx = perm[n_val:], perm[:n_val]
    return np.sort(train_idx), np.sort(val_idx)
