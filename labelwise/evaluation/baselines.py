"""Trivial predictors scored on the evaluation data, and plain-English sanity warnings.

A model is only as good as its margin over "predict no label at all": on a data set where half
the images carry no label, that scores 50% exact-match. ``baseline_scores`` computes such
baselines with the same ``compute_metrics`` (threshold 0.5) as the model, and
``sanity_warnings`` says, with numbers, when a model fails to beat them or has collapsed to one
constant output.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from labelwise.evaluation.metrics import (
    HIGHER_IS_BETTER,
    compute_metrics,
    finite_or_none,
    label_set_counts,
    summary_of,
)
from labelwise.evaluation.names import metric_label
from labelwise.labels import LabelSpace

BASELINE_DESCRIPTIONS: dict[str, str] = {
    "predict_nothing": "predicting no label at all",
    "label_frequency": "predicting each label's training frequency",
    "most_common_set": "predicting the most common training label set for every image",
    "majority_class": "predicting the most common training class for every image",
    "class_frequency": "predicting the training class frequencies for every image",
}

# Margin a model needs over the best baseline to "clearly" beat it: 0.02 absolute, or 10% of
# the headroom left above the baseline when that is smaller (hamming accuracy of a trivial
# model is often 0.95, and a real model that reaches 0.97 has closed 40% of the gap).
MARGIN_ABS = 0.02
MARGIN_HEADROOM = 0.10
# Collapse: the most common predicted output covers this share of images ...
CONSTANT_SHARE = 0.95
# ... and at least this much more than the most common true output does (skewed data is fine).
CONSTANT_EXCESS = 0.05
# Probabilities whose largest per-label standard deviation across images is below this.
CONSTANT_STD = 1e-3

_SUGGEST = {
    "multilabel": ("try --class-weights auto, tuned thresholds (--threshold-objective f1), more "
                   "epochs, a pretrained backbone, or a higher learning rate"),
    "multiclass": ("try --class-weights auto, more epochs, a pretrained backbone, or a higher "
                   "learning rate"),
}
_RANKING_KEYS = ("map", "auroc_macro")
_RANKING_PREFERENCE = ("label_frequency", "class_frequency")


def baseline_scores(train_targets: np.ndarray, eval_targets: np.ndarray, labels: LabelSpace) -> dict[str, dict]:
    """{baseline name: summary metrics on ``eval_targets``} (no per_class, no confusion matrix).

    multilabel: predict_nothing, label_frequency, most_common_set. multiclass: majority_class,
    class_frequency. Targets are multi-hot (N, C); only training label statistics are used.
    """
    train = np.asarray(train_targets)
    c = len(labels)
    if train.ndim != 2 or train.shape[1] != c:
        raise ValueError(f"train targets must be (N, {c}); got {train.shape}")
    freq = train.mean(axis=0) if train.shape[0] else np.zeros(c)
    return baseline_scores_from_stats(freq, most_common_row(train, c), eval_targets, labels)


def baseline_scores_from_stats(label_freq: np.ndarray, most_common_set: np.ndarray, eval_targets: np.ndarray,
                               labels: LabelSpace) -> dict[str, dict]:
    """Same as ``baseline_scores`` from stored training statistics (model.json keeps them).

    label_freq: (C,) share of training images per label; most_common_set: (C,) 0/1 row.
    """
    ev = np.asarray(eval_targets)
    c = len(labels)
    if ev.ndim != 2 or ev.shape[1] != c:
        raise ValueError(f"targets must be (N, {c}); got {ev.shape}")
    candidates = baseline_predictions(label_freq, most_common_set, ev.shape[0], labels)
    return {name: summary_of(compute_metrics(p, ev, labels)) for name, p in candidates.items()}


def baseline_predictions(label_freq: np.ndarray, most_common_set: np.ndarray, n: int, labels: LabelSpace
                         ) -> dict[str, np.ndarray]:
    """{baseline name: (n, C) constant probabilities} that the trivial baselines predict for n images
    (scored at 0.5 like any model; the bootstrap intervals resample them with the model)."""
    c = len(labels)
    freq = np.asarray(label_freq, dtype=np.float64)
    if labels.multilabel:
        rows = {"predict_nothing": np.zeros(c), "label_frequency": freq,
                "most_common_set": np.asarray(most_common_set, np.float64)}
    else:
        majority = np.zeros(c)
        majority[int(np.argmax(freq))] = 1.0
        rows = {"majority_class": majority, "class_frequency": freq}
    return {name: np.ascontiguousarray(np.broadcast_to(row, (n, c))) for name, row in rows.items()}


def sanity_warnings(model_metrics: dict[str, Any], baselines: dict[str, dict], monitor: str,
                    labels: LabelSpace, probs: np.ndarray | None = None) -> list[str]:
    """Short warnings (with numbers) when the model does not clearly beat a trivial baseline, or
    gives (nearly) the same output for every image. An empty list means nothing looks wrong.

    ``model_metrics`` is a ``compute_metrics`` result; its per-class thresholds are used to
    turn ``probs`` (optional) into decisions for the constant-output check.
    """
    warnings: list[str] = []
    keys = [monitor] + (["exact_match", "hamming_accuracy"] if labels.multilabel else ["accuracy"])
    for key in dict.fromkeys(keys):  # ordered, de-duplicated
        msg = _baseline_warning(model_metrics, baselines, key)
        if msg:
            warnings.append(msg)
    collapse = _constant_output_warning(model_metrics, labels, probs)
    if collapse:
        warnings.append(collapse)
    if warnings:  # one suggestion, after the last finding, keeps the list short
        warnings[-1] += f" To fix: {_SUGGEST[labels.task]}."
    return warnings


def _baseline_warning(model: dict[str, Any], baselines: dict[str, dict], key: str) -> str | None:
    value = finite_or_none(model.get(key))
    if value is None or key not in HIGHER_IS_BETTER:
        return None
    higher = HIGHER_IS_BETTER[key]
    scored = {name: float(b[key]) for name, b in baselines.items() if finite_or_none(b.get(key)) is not None}
    if not scored:
        return None
    best = max(scored.values()) if higher else min(scored.values())
    # On ties name the most telling baseline: for ranking scores every constant predictor is
    # the same, so call it by the label frequencies; otherwise the first (simplest) one.
    tied = [n for n, v in scored.items() if v == best]
    preferred = [n for n in _RANKING_PREFERENCE if n in tied] if key in _RANKING_KEYS else []
    name = (preferred or tied)[0]
    headroom = (1.0 - best) if higher else best
    margin = min(MARGIN_ABS, MARGIN_HEADROOM * max(headroom, 0.0))
    gain = (value - best) if higher else (best - value)
    if gain >= margin and gain > 0:
        return None
    what = metric_label(key).replace("exact match", "exact-match")
    how = BASELINE_DESCRIPTIONS.get(name, name)
    if abs(value - best) < 0.005:
        verdict = "equals"
    elif gain < 0:
        verdict = "is worse than"
    else:
        verdict = "is barely better than"
    return f"{what} {value:.3f} {verdict} {how} ({best:.3f})."


def _constant_output_warning(model: dict[str, Any], labels: LabelSpace, probs: np.ndarray | None) -> str | None:
    pred_share = finite_or_none(model.get("top_pred_share"))
    true_share = finite_or_none(model.get("top_true_share"))
    if probs is not None:
        p = np.asarray(probs, dtype=np.float64)
        if p.ndim == 2 and p.shape[0] > 1:
            spread = float(p.std(axis=0).max())
            if spread < CONSTANT_STD:
                return (f"The model gives almost the same probabilities for every image "
                        f"(largest per-label std {spread:.1e}): it has not learned from the images.")
            pred_share = _prediction_share(p, model, labels)
    if pred_share is None or pred_share < CONSTANT_SHARE:
        return None
    if true_share is not None and pred_share - true_share < CONSTANT_EXCESS:
        return None  # the data itself is that skewed
    data = f", though only {true_share:.0%} of images share one" if true_share is not None else ""
    if labels.multilabel:
        empty = finite_or_none(model.get("empty_pred_share"))
        if empty is not None and empty >= CONSTANT_SHARE:
            return f"The model predicts no label at all for {empty:.0%} of images."
        return f"The model predicts the same label set for {pred_share:.0%} of images{data}."
    return f"The model predicts the same class for {pred_share:.0%} of images{data}."


def _prediction_share(p: np.ndarray, model: dict[str, Any], labels: LabelSpace) -> float:
    """Share of images whose decision equals the most common decision."""
    if labels.multilabel:
        per_class = model.get("per_class") or {}
        th = np.array([per_class.get(n, {}).get("threshold", 0.5) for n in labels.names], dtype=np.float64)
        _, counts = label_set_counts(p >= th)
    else:
        counts = np.bincount(np.argmax(p, axis=1), minlength=p.shape[1])
    return float(counts.max() / p.shape[0])


def most_common_row(targets: np.ndarray, c: int) -> np.ndarray:
    """The most frequent label set (ties: the lowest bit code, so the empty set wins any tie)."""
    if targets.shape[0] == 0:
        return np.zeros(c)
    sets, counts = label_set_counts(targets > 0)
    return sets[int(np.argmax(counts))].astype(np.float64)
