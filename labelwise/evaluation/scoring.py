"""Scoring a model honestly (tuned and 0.5 cut-offs, trivial baselines, sanity warnings) and evaluate()."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labelwise.evaluation.baselines import (
    baseline_scores_from_stats,
    most_common_row,
    sanity_warnings,
)
from labelwise.evaluation.metrics import compute_metrics
from labelwise.evaluation.thresholds import apply_thresholds
from labelwise.labels import LabelSpace


@dataclass(frozen=True)
class TrainStats:
    """What the trivial baselines need to know about the training labels (stored in model.json)."""

    label_freq: tuple[float, ...]
    most_common_set: tuple[str, ...]

    def as_meta(self) -> dict[str, Any]:
        return {"train_label_freq": self.label_freq, "train_most_common_set": self.most_common_set}


def train_stats(train_targets: np.ndarray, labels: LabelSpace) -> TrainStats:
    freq = tuple(float(f) for f in np.asarray(train_targets, dtype=np.float64).mean(0))
    common = np.flatnonzero(most_common_row(np.asarray(train_targets), len(labels)))
    return TrainStats(freq, tuple(labels.names[k] for k in common))


def _set_vector(stats: TrainStats, labels: LabelSpace) -> np.ndarray:
    return np.array([n in stats.most_common_set for n in labels.names], dtype=np.uint8)


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if k not in ("per_class", "confusion_matrix")}


def score(probs: np.ndarray, targets: np.ndarray, labels: LabelSpace, thresholds: np.ndarray, stats: TrainStats,
          monitor: str, *, at_least_one: bool = False, tuned_on_same_data: bool = False) -> dict[str, Any]:
    """Model metrics next to the trivial baselines, plus plain-English warnings."""

    result: dict[str, Any] = {"task": labels.task, "monitor": monitor, "n_images": int(len(targets))}
    model = compute_metrics(probs, targets, labels, thresholds=np.asarray(thresholds))
    if labels.multilabel and at_least_one:
        model = _with_decisions(model, apply_thresholds(probs, thresholds, at_least_one=True), probs, targets, labels)
    result["model"] = model
    if labels.multilabel:
        result["thresholds"] = {n: float(t) for n, t in zip(labels.names, thresholds)}
        result["model_at_0.5"] = _summary(compute_metrics(probs, targets, labels, thresholds=np.full(len(labels), 0.5)))
    result["baselines"] = baseline_scores_from_stats(np.asarray(stats.label_freq), _set_vector(stats, labels), targets, labels)
    result["warnings"] = sanity_warnings(model, result["baselines"], monitor, labels, probs)
    if tuned_on_same_data:
        result["notes"] = ["Per-class thresholds were tuned on these same validation images, so metrics at "
                           "the tuned thresholds are optimistic; `labelwise evaluate` on held-out images "
                           "gives the honest figure. Threshold-free metrics (map, auroc) are unaffected."]
    return result


def _with_decisions(model: dict, decisions: np.ndarray, probs, targets, labels) -> dict:
    # --at-least-one changes decisions only; rescore with the decisions as hard 0/1 "probabilities" for the
    # thresholded metrics, keeping the ranking metrics of the real probabilities.
    hard = compute_metrics(decisions.astype(np.float64), targets, labels, thresholds=np.full(len(labels), 0.5))
    keep = {k: model[k] for k in model if k.startswith(("map", "auroc"))}
    hard.update(keep)
    return hard




