"""Train/validation splits and k folds: stratified (multi-class), iterative (multi-label), grouped.

* Multi-class: stratified by class. Multi-label: iterative stratification (Sechidis et al. 2011), so
  every label, rare ones too, keeps its share in each part; images with no label count as one more
  label and are spread proportionally as well.
* With ``Samples.groups`` set, whole groups are assigned (augmented copies, one scene, one patient
  never cross a split) by the same iterative stratification run over groups: each group carries the
  sum of its images' label vectors, and the parts are filled to their share of images.
* The same seed gives the same split.

>>> train_idx, val_idx = train_val_split(samples, 0.2, seed=0)                 # doctest: +SKIP
>>> for train_idx, val_idx in kfold_splits(samples, 5, seed=0): ...             # doctest: +SKIP
"""
from __future__ import annotations

import warnings

import numpy as np

from labelwise.data.samples import Samples
from labelwise.errors import ConfigError, DataError

Split = tuple[np.ndarray, np.ndarray]  # (train indices, validation indices), sorted int64


AUTO_VAL_FRACTION = 0.2
AUTO_VAL_MAX = 5000  # images: beyond this, a larger validation set tells little more (±0.6 point at 94% accuracy)


def auto_val_split(given: float | None, n_images: int) -> float:
    """--val-split as given; unset: 0.2 of the images, but at most AUTO_VAL_MAX of them."""
    if given is not None:
        return given
    if n_images * AUTO_VAL_FRACTION <= AUTO_VAL_MAX:
        return AUTO_VAL_FRACTION
    return round(AUTO_VAL_MAX / n_images, 6)


def train_val_split(samples: Samples, val_fraction: float, seed: int) -> Split:
    """Indices (train, val), sorted. The same seed gives the same split.

    Without groups, val holds exactly round(N * val_fraction) images; with groups, whole groups
    are moved, so the share is met as closely as the group sizes allow.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"--val-split must be between 0 and 1 (exclusive), got {val_fraction}")
    n = len(samples)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise DataError(f"{samples.origin}: {n} images are too few for a validation split of {val_fraction}; "
                        "add images or change --val-split")
    if samples.groups is not None:
        gid = samples.group_ids()
        n_groups = int(gid.max()) + 1
        if n_groups < 2:
            raise DataError(f"{samples.origin}: all {n} images are in one group, so no split can keep groups "
                            "apart; check --group-by (it should give each original image its own key)")
        fold = _grouped_folds(samples, gid, np.array([1.0 - val_fraction, val_fraction]), seed)
        train_idx, val_idx = np.flatnonzero(fold == 0), np.flatnonzero(fold == 1)
        if len(val_idx) == 0 or len(train_idx) == 0:
            raise DataError(f"{samples.origin}: {n_groups} groups are too few to put {val_fraction:.0%} of the "
                            "images in validation; add images or change --val-split or --group-by")
        return train_idx, val_idx
    targets = samples.targets
    if samples.labels.multilabel:
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
        train_idx, val_idx = next(splitter.split(np.zeros(n), _label_matrix(samples)))
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


def kfold_splits(samples: Samples, k: int, seed: int) -> list[Split]:
    """k (train, val) index pairs, sorted; every image is in exactly one val fold.

    Multi-class: StratifiedKFold; multi-label: MultilabelStratifiedKFold (iterative); with groups:
    iterative stratification over groups, each fold getting about N/k images.
    """
    if k < 2:
        raise ConfigError(f"--folds must be at least 2, got {k}")
    n = len(samples)
    if n < k:
        raise DataError(f"{samples.origin}: {n} images are too few for {k} folds; use --folds {max(2, n)} or fewer")
    if samples.groups is not None:
        gid = samples.group_ids()
        n_groups = int(gid.max()) + 1
        if n_groups < k:
            raise DataError(f"{samples.origin}: {n_groups} groups are too few for {k} folds (each fold needs "
                            f"whole groups); use --folds {n_groups} or fewer, or check --group-by")
        fold = _grouped_folds(samples, gid, np.full(k, 1.0 / k), seed)
    else:
        fold = np.empty(n, dtype=np.int64)
        for f, (_, val_idx) in enumerate(_kfold_splitter(samples, k, seed)):
            fold[val_idx] = f
    splits = [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]
    if any(len(v) == 0 for _, v in splits):
        raise DataError(f"{samples.origin}: could not fill all {k} folds; use fewer --folds")
    return splits


def _kfold_splitter(samples: Samples, k: int, seed: int):
    x = np.zeros(len(samples))
    if samples.labels.multilabel:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        return MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, _label_matrix(samples))
    from sklearn.model_selection import KFold, StratifiedKFold

    y = samples.class_index()
    if np.bincount(y).max() < k:  # every class smaller than k: stratifying is impossible
        return KFold(n_splits=k, shuffle=True, random_state=seed).split(x)
    with warnings.catch_warnings():
        # "least populated class has only m members": such a class simply misses some folds
        warnings.simplefilter("ignore", UserWarning)
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(x, y))


def _label_matrix(samples: Samples) -> np.ndarray:
    """(N, L) int64 label indicators; multi-label gets an extra "no label" column, so images without a
    label are stratified like any other label."""
    t = samples.targets.astype(np.int64)
    if samples.labels.multilabel:
        t = np.concatenate([t, (t.sum(1) == 0)[:, None].astype(np.int64)], axis=1)
    return t


def _grouped_folds(samples: Samples, gid: np.ndarray, fractions: np.ndarray, seed: int) -> np.ndarray:
    """Fold index per image (N,), assigning whole groups."""
    y = _label_matrix(samples)
    n_groups = int(gid.max()) + 1
    counts = np.zeros((n_groups, y.shape[1]), dtype=np.int64)
    np.add.at(counts, gid, y)  # a group's label vector: how many of its images carry each label
    sizes = np.bincount(gid, minlength=n_groups)
    return _assign_groups(counts, sizes, fractions, np.random.default_rng(seed))[gid]


def _assign_groups(counts: np.ndarray, sizes: np.ndarray, fractions: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """Iterative stratification over groups: fold index per group (G,).

    counts (G, L): label occurrences per group; sizes (G,): images per group; fractions (F,): each
    fold's share. Labels are handled rarest first (by groups left); each group holding the label goes
    to the fold that still wants the most of it, ties to the fold that wants the most images, then at
    random. Within a label, big groups go first, while every fold still has room for them.
    """
    n_groups, _ = counts.shape
    want = fractions[:, None] * counts.sum(0)[None, :].astype(np.float64)  # (F, L) occurrences still wanted
    want_size = fractions * float(sizes.sum())  # (F,) images still wanted
    has = counts > 0
    left = has.sum(0)  # (L,) groups with the label not placed yet
    fold = np.full(n_groups, -1, dtype=np.int64)
    order = rng.permutation(n_groups)
    order = order[np.argsort(-sizes[order], kind="stable")]  # biggest first, random among equals
    while True:
        active = np.flatnonzero(left > 0)
        if len(active) == 0:
            break
        rarest = active[left[active] == left[active].min()]
        label = int(rarest[rng.integers(len(rarest))])
        for g in order[has[order, label] & (fold[order] < 0)]:
            f = _best_fold(want[:, label], want_size, rng)
            fold[g] = f
            want[f] -= counts[g]
            want_size[f] -= sizes[g]
            left -= has[g]
    # Every group has a label column set (multi-label has the "no label" one); should a row ever be
    # all zero, its group still goes somewhere: to the fold that wants the most images.
    for g in order[fold[order] < 0]:
        fold[g] = int(np.argmax(want_size))
        want_size[fold[g]] -= sizes[g]
    return _refine(fold, counts, sizes, fractions, rng)


def _refine(fold: np.ndarray, counts: np.ndarray, sizes: np.ndarray, fractions: np.ndarray,
            rng: np.random.Generator, max_steps: int = 1000, sample: int = 512) -> np.ndarray:
    """Move single groups, or swap two, between folds while that lowers the chi-square distance of
    the folds' (label counts, image count) to their targets.

    The greedy pass meets each label's count but not the number of images: with multi-label groups
    of different sizes a fold can end several percent short. The chi-square sum weighs a miss by
    its expected count, so a rare label is not traded away for a few images. Swaps are searched
    among up to ``sample`` random groups per fold per step, which bounds the cost on large sets.
    """
    x = np.concatenate([counts, sizes[:, None]], axis=1).astype(np.float64)  # (G, C+1)
    target = fractions[:, None] * x.sum(0)[None, :]  # (F, C+1)
    inv_t = 1.0 / np.maximum(target, 1.0)
    n_folds = len(fractions)
    have = np.zeros_like(target)
    np.add.at(have, fold, x)
    x2 = x * x
    for _ in range(max_steps):
        d = have - target
        # Moving vector v out of fold a into fold b changes the sum by
        # sum_c v^2 (1/t_a + 1/t_b) + 2 v (d_b/t_b - d_a/t_a).
        leave = ((x2 - 2 * x * d[fold]) * inv_t[fold]).sum(1)
        join = (x2 @ inv_t.T) + 2 * (x @ (d * inv_t).T)  # (G, F)
        delta = leave[:, None] + join
        delta[np.arange(len(fold)), fold] = np.inf
        g, b = np.unravel_index(int(np.argmin(delta)), delta.shape)
        best, move = float(delta[g, b]), (int(g), -1, int(b))
        for a in range(n_folds):
            for b2 in range(a + 1, n_folds):
                found = _best_swap(x, fold, a, b2, d, inv_t, rng, sample)
                if found is not None and found[0] < best:
                    best, move = found[0], (found[1], found[2], b2)
        if not best < -1e-9:
            break
        g, h, b = move
        a = int(fold[g])
        have[a] -= x[g]
        have[b] += x[g]
        fold[g] = b
        if h >= 0:  # a swap: h goes the other way
            have[b] -= x[h]
            have[a] += x[h]
            fold[h] = a
    return fold


def _best_swap(x: np.ndarray, fold: np.ndarray, a: int, b: int, d: np.ndarray, inv_t: np.ndarray,
               rng: np.random.Generator, sample: int) -> tuple[float, int, int] | None:
    """(change of the chi-square sum, g in fold a, h in fold b) for the best swap among sampled groups."""
    in_a, in_b = np.flatnonzero(fold == a), np.flatnonzero(fold == b)
    if len(in_a) == 0 or len(in_b) == 0:
        return None
    if len(in_a) > sample:
        in_a = np.sort(rng.choice(in_a, sample, replace=False))
    if len(in_b) > sample:
        in_b = np.sort(rng.choice(in_b, sample, replace=False))
    w = inv_t[a] + inv_t[b]
    u = 2 * (d[b] * inv_t[b] - d[a] * inv_t[a])
    xa, xb = x[in_a], x[in_b]
    # v = x_g - x_h moves from a to b: sum_c w v^2 + u v, expanded so one matmul covers all pairs
    delta = ((xa * xa) @ w + xa @ u)[:, None] + ((xb * xb) @ w - xb @ u)[None, :] - 2 * (xa * w) @ xb.T
    i, j = np.unravel_index(int(np.argmin(delta)), delta.shape)
    return float(delta[i, j]), int(in_a[i]), int(in_b[j])


def _best_fold(want_label: np.ndarray, want_size: np.ndarray, rng: np.random.Generator) -> int:
    # Plain Python: F is a handful of folds and this runs once per group (np.isclose costs 100x more).
    wl, ws = want_label.tolist(), want_size.tolist()
    top = max(wl)
    best = [f for f, w in enumerate(wl) if w >= top - 1e-9 * max(1.0, abs(top))]
    if len(best) > 1:
        top_size = max(ws[f] for f in best)
        best = [f for f in best if ws[f] >= top_size - 1e-9 * max(1.0, abs(top_size))]
    return best[int(rng.integers(len(best)))] if len(best) > 1 else best[0]
