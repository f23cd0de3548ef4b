"""Per-label decision thresholds for multi-label models: fit them on validation data, apply them.

Conventions (tests in tests/evaluation/test_thresholds.py pin each one):

* A label is predicted when ``prob >= threshold`` (the same rule in metrics, predict and export).
* Fitting searches *every* distinct probability of a label exactly (one sort per column, then
  cumulative TP/FP counts), so the result is the true optimum on the data, not a grid point.
  The threshold returned is the **midpoint** between the lowest probability that is still
  predicted and the next lower distinct probability: the decisions on the fitting data are
  exactly those of the optimum, while new images that land in the gap are split fairly.
  If the optimum predicts every image the threshold is half the lowest probability.
* A label with fewer than ``min_positives`` positives (default 1: none at all) keeps the
  ``fallback`` threshold 0.5. With no positive there is no evidence to tune on; 1.0 would
  silently switch the label off for every future image, which a saved model must not do.
* **Robust F1** (the default for ``"f1"``, ``robust=True``): the exact F1 optimum of a label with a
  few dozen validation positives is mostly noise, and on held-out data it lost to the plain 0.5
  cut-off it replaced (issue 16). So the fit (1) smooths each label's F1 curve over a window of
  ~sqrt(positives)/2 cuts, (2) only considers cuts that make clearly fewer validation errors
  (FP + FN) than the 0.5 cut-off does (``ERROR_MARGIN_Z`` x sqrt(images decided differently)) -- a
  cut that trades accuracy for F1 on a few hundred images does not hold up on new ones, while
  where 0.5 is wrong (class weights, an over-confident model) the allowed range is wide, (3) shrinks each label's cut toward one global cut in logit space by its
  support (weight ``positives / (positives + SHRINK_POSITIVES)``), and (4) gives a label with fewer
  than ``MIN_SUPPORT`` positives the global cut outright (``ThresholdFit.fallback`` says which).
  The global cut is fitted by the same rules on all labels pooled. ``robust=False`` gives the
  exact optimum on the fitting data (below).
* Thresholds are **not** clipped to a "sensible" band such as [0.01, 0.99]: an over-confident
  model often needs a cut at 0.995 (or a rare label one at 0.003), and clipping would undo the
  tuning without saying so. Over-fitting is limited by the midpoint rule and ``min_positives``.
* ``precision@P``: the lowest threshold whose precision on the data is >= P (so the largest
  recall that keeps precision >= P). When no threshold reaches P, the threshold with the
  highest precision is used (ties: the lowest such threshold); ``fit_thresholds_detailed``
  reports which labels missed their target.
* ``recall@R``: the highest threshold whose recall is >= R (so the fewest predictions).

Usage::

    th = fit_thresholds(val_probs, val_targets, "f1")          # (C,) float64
    preds = apply_thresholds(test_probs, th)                   # (N, C) uint8
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from labelwise.errors import ConfigError

OBJECTIVE_FORMS = ("f1", "precision@P", "recall@R")
_OBJECTIVE_RE = re.compile(r"^(precision|recall)@([0-9]*\.?[0-9]+)$")


def parse_objective(s: str) -> tuple[str, float | None]:
    """``"f1"`` -> ("f1", None); ``"precision@0.9"`` -> ("precision", 0.9); ``"recall@0.8"`` likewise.

    P and R must lie in (0, 1]. Anything else raises ConfigError naming --threshold-objective.
    """
    text = str(s).strip().lower()
    if text == "f1":
        return "f1", None
    m = _OBJECTIVE_RE.match(text)
    if m:
        value = float(m.group(2))
        if 0.0 < value <= 1.0:
            return m.group(1), value
        raise ConfigError(f"--threshold-objective {s!r}: the target after '@' must be in (0, 1], "
                          f"e.g. precision@0.9 or recall@0.8")
    raise ConfigError(f"--threshold-objective {s!r} is not understood; use one of "
                      f"{', '.join(OBJECTIVE_FORMS)} (P, R in (0, 1]), e.g. f1, precision@0.9, recall@0.8")


def rank_columns(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort every label by descending probability; the shared core of thresholds, AP and AUROC.

    Takes (N, C) arrays and returns *label-major* (C, N) arrays (contiguous rows sort about 3x
    faster than strided columns): ``values`` sorted probabilities, ``cum_tp`` int64 number of
    positives among the first i+1 images, and ``end`` bool: image i is the last of its group
    of tied probabilities, i.e. a place where a threshold can cut. False positives are
    ``(i + 1) - cum_tp``.
    """
    p = np.ascontiguousarray(np.asarray(probs, dtype=np.float64).T)
    t = np.ascontiguousarray(np.asarray(targets).T)
    # Ascending argsort reversed: within ties the order is irrelevant, because only group ends
    # (where all tied images are in or all out) are ever used.
    order = np.argsort(p, axis=1)[:, ::-1]
    values = np.take_along_axis(p, order, axis=1)
    cum_tp = np.cumsum(np.take_along_axis(t, order, axis=1), axis=1, dtype=np.int64)
    end = np.ones_like(values, dtype=bool)
    end[:, :-1] = values[:, :-1] != values[:, 1:]
    return values, cum_tp, end


@dataclass(frozen=True)
class ThresholdFit:
    """Fitted thresholds plus what they achieve on the fitting data (per label)."""

    thresholds: np.ndarray  # (C,) float64
    met: np.ndarray  # (C,) bool: objective target reached (always True for f1 with positives)
    fitted: np.ndarray  # (C,) bool: False where the fallback was used (too few positives)
    precision: np.ndarray  # (C,) on the fitting data, at the chosen threshold
    recall: np.ndarray
    f1: np.ndarray
    # Robust F1 only: labels given the global cut (fewer than MIN_SUPPORT positives), and that cut.
    fallback: np.ndarray | None = None
    global_threshold: float | None = None


def fit_thresholds_detailed(probs: np.ndarray, targets: np.ndarray, objective: str = "f1", *,
                            fallback: float = 0.5, min_positives: int = 1, robust: bool = True) -> ThresholdFit:
    """fit_thresholds plus per-label diagnostics (see module docstring for the rules).

    ``robust`` applies to the f1 objective only; ``fallback`` is then also the reference cut-off
    whose validation errors a tuned cut may not exceed.
    """
    kind, target = parse_objective(objective)
    p = np.asarray(probs, dtype=np.float64)
    t = _binary_targets(targets, p.shape)
    if kind == "f1" and robust:
        return _robust_f1(p, t, float(fallback))
    n, c = p.shape
    positives = t.sum(axis=0)
    thresholds = np.full(c, float(fallback))
    met = np.zeros(c, dtype=bool)
    fitted = positives >= max(1, int(min_positives))
    if n == 0 or not fitted.any():
        return _finish(p, t, thresholds, met, fitted)

    values, cum_tp, end = rank_columns(p, t)  # (C, N) each
    predicted = np.arange(1, n + 1, dtype=np.float64)[None, :]  # images at or above each cut
    tp = cum_tp.astype(np.float64)
    pos = np.maximum(positives, 1).astype(np.float64)[:, None]
    if kind == "f1":
        score = 2.0 * tp / (predicted + pos)
        score[~end] = -1.0  # only group ends are real cuts
        k = np.argmax(score, axis=1)  # first maximum = highest threshold among equal F1
        met[:] = True
    elif kind == "precision":
        precision = tp / predicted
        ok = end & (precision >= target - 1e-12)
        met = ok.any(axis=1)
        last_ok = n - 1 - np.argmax(ok[:, ::-1], axis=1)  # lowest threshold meeting the target
        # Best effort where P is out of reach: the highest precision, lowest threshold on ties.
        masked = np.where(end, precision, -1.0)
        best = n - 1 - np.argmax(masked[:, ::-1], axis=1)
        k = np.where(met, last_ok, best)
    else:  # recall
        recall = tp / pos
        ok = end & (recall >= target - 1e-12)
        met = ok.any(axis=1)
        k = np.argmax(ok, axis=1)  # highest threshold meeting the target
    cols = np.arange(c)
    chosen = values[cols, k]
    lower = np.where(k + 1 < n, values[cols, np.minimum(k + 1, n - 1)], 0.0)
    mid = (chosen + lower) / 2.0
    # Adjacent floats: the midpoint may round down onto `lower`, which would admit that group.
    mid = np.where(mid > lower, mid, chosen)
    thresholds = np.where(fitted, mid, thresholds)
    met = met & fitted
    return _finish(p, t, thresholds, met, fitted)


def fit_thresholds(probs: np.ndarray, targets: np.ndarray, objective: str = "f1", *,
                   fallback: float = 0.5, min_positives: int = 1, robust: bool = True) -> np.ndarray:
    """Per-label thresholds (C,) float64 that optimise ``objective`` on (probs, targets).

    ``objective`` is "f1", "precision@P" or "recall@R". ``probs`` are probabilities (N, C),
    ``targets`` multi-hot (N, C). About 0.1 s for 70,000 x 20.

    >>> fit_thresholds(np.array([[0.9], [0.6], [0.2]]), np.array([[1], [1], [0]]), robust=False)
    array([0.4])
    """
    return fit_thresholds_detailed(probs, targets, objective, fallback=fallback,
                                   min_positives=min_positives, robust=robust).thresholds


# Robust F1 (module docstring): a label needs this many positives for a cut of its own ...
MIN_SUPPORT = 5
# ... and its cut is pulled toward the global one as if the global cut had this many positives behind it.
SHRINK_POSITIVES = 10.0
# ... and may only leave the reference cut where it saves this many standard errors (sqrt of the images
# it decides differently) of mistakes on the fitting data.
ERROR_MARGIN_Z = 1.5
_LOGIT_CLIP = 1e-6


def fallback_labels(targets: np.ndarray) -> np.ndarray:
    """(C,) bool: the labels that robust F1 fitting gives the global cut (too few positives)."""
    return np.asarray(targets).sum(axis=0) < MIN_SUPPORT


def _robust_f1(p: np.ndarray, t: np.ndarray, reference: float) -> ThresholdFit:
    n, c = p.shape
    positives = t.sum(axis=0)
    few = positives < MIN_SUPPORT
    if n == 0 or c == 0:
        return _finish(p, t, np.full(c, reference), np.zeros(c, bool), np.zeros(c, bool), few, None)
    # One global cut from every (image, label) decision pooled; then one cut per label with support.
    global_th = float(_constrained_f1_cut(p.reshape(-1, 1), t.reshape(-1, 1), reference)[0])
    own = _constrained_f1_cut(p, t, reference)
    w = positives / (positives + SHRINK_POSITIVES)
    mixed = _sigmoid(w * _logit(own) + (1.0 - w) * _logit(np.full(c, global_th)))
    thresholds = np.where(few, global_th, mixed)
    return _finish(p, t, thresholds, ~few, ~few, few, global_th)


def _constrained_f1_cut(p: np.ndarray, t: np.ndarray, reference: float) -> np.ndarray:
    """(C,) the cut with the best smoothed F1 among those clearly making fewer errors than ``reference``."""
    n, c = p.shape
    values, cum_tp, end = rank_columns(p, t)
    pos = cum_tp[:, -1].astype(np.float64)
    predicted = np.arange(1, n + 1, dtype=np.float64)[None, :]
    tp = cum_tp.astype(np.float64)
    f1 = 2.0 * tp / (predicted + np.maximum(pos, 1.0)[:, None])
    errors = (predicted - tp) + (pos[:, None] - tp)
    ref_pred = p >= reference
    ref_errors = (ref_pred != (t == 1)).sum(axis=0).astype(np.float64)
    # A cut that decides m images differently from the reference must save about sqrt(m) errors on
    # them: the best of many cuts "as good as 0.5" on validation is worse than 0.5 on new images.
    moved = np.abs(predicted - ref_pred.sum(axis=0)[:, None])
    budget = ref_errors[:, None] - ERROR_MARGIN_Z * np.sqrt(moved)
    # Moving average of F1 over +-h cuts (h ~ sqrt(positives) / 2): a lone spike is not a plateau.
    h = np.maximum(1, np.floor(np.sqrt(pos) / 2.0)).astype(np.int64)[:, None]
    csum = np.concatenate([np.zeros((c, 1)), np.cumsum(f1, axis=1)], axis=1)
    idx = np.arange(n)[None, :]
    lo, hi = np.maximum(idx - h, 0), np.minimum(idx + h, n - 1)
    smooth = (np.take_along_axis(csum, hi + 1, 1) - np.take_along_axis(csum, lo, 1)) / (hi - lo + 1)
    allowed = end & (errors <= budget + 1e-9)
    score = np.where(allowed, smooth, -1.0)
    k = np.argmax(score, axis=1)
    cols = np.arange(c)
    chosen = values[cols, k]
    lower = np.where(k + 1 < n, values[cols, np.minimum(k + 1, n - 1)], 0.0)
    mid = (chosen + lower) / 2.0
    mid = np.where(mid > lower, mid, chosen)
    ok = allowed.any(axis=1) & (pos > 0)
    return np.where(ok, mid, reference)


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
    return np.log(x) - np.log1p(-x)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def apply_thresholds(probs: np.ndarray, thresholds: float | np.ndarray,
                     at_least_one: bool = False) -> np.ndarray:
    """Probabilities (N, C) -> multi-hot decisions (N, C) uint8, predicted where prob >= threshold.

    ``at_least_one``: an image with no label over its threshold gets the single label with the
    highest ``prob / threshold`` ratio, i.e. the label closest to being predicted *relative to
    its own cut*; with one global threshold this is simply the most probable label.
    """
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {p.shape}")
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim not in (0, 1) or (th.ndim == 1 and th.shape[0] != p.shape[1]):
        raise ValueError(f"thresholds must be a scalar or ({p.shape[1]},), got shape {th.shape}")
    out = (p >= th).astype(np.uint8)
    if at_least_one and p.shape[0] and p.shape[1]:
        empty = ~out.any(axis=1)
        if empty.any():
            ratio = p[empty] / np.maximum(np.broadcast_to(th, (p.shape[1],)), 1e-12)
            out[np.flatnonzero(empty), np.argmax(ratio, axis=1)] = 1
    return out


def _binary_targets(targets: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    t = np.asarray(targets)
    if len(shape) != 2:
        raise ValueError(f"probs must be (N, C), got shape {shape}")
    if t.shape != shape:
        raise ValueError(f"targets shape {t.shape} does not match probs shape {shape}")
    if t.dtype != np.bool_ and not ((t == 0) | (t == 1)).all():
        raise ValueError("targets must be multi-hot 0/1")
    return t.astype(np.int8)


def _finish(p: np.ndarray, t: np.ndarray, thresholds: np.ndarray, met: np.ndarray,
            fitted: np.ndarray, fallback: np.ndarray | None = None, global_threshold: float | None = None
            ) -> ThresholdFit:
    """Score the chosen thresholds on the fitting data (cheap: one comparison)."""
    pred = p >= thresholds
    tp = (pred & (t == 1)).sum(axis=0).astype(np.float64)
    npred = pred.sum(axis=0)
    npos = t.sum(axis=0)
    precision = np.divide(tp, npred, out=np.zeros_like(tp), where=npred > 0)
    recall = np.divide(tp, npos, out=np.zeros_like(tp), where=npos > 0)
    denom = npred + npos
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return ThresholdFit(thresholds.astype(np.float64), met.astype(bool), fitted.astype(bool),
                        precision, recall, f1, fallback, global_threshold)
