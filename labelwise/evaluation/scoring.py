"""Scoring a model honestly (tuned and 0.5 cut-offs, trivial baselines, sanity warnings) and evaluate()."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labelwise.evaluation.baselines import (
    baseline_predictions,
    baseline_scores_from_stats,
    most_common_row,
    sanity_warnings,
)
from labelwise.evaluation.intervals import bootstrap_intervals
from labelwise.evaluation.metrics import compute_metrics
from labelwise.evaluation.thresholds import MIN_SUPPORT, apply_thresholds, fallback_labels
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
          monitor: str, *, at_least_one: bool = False, tuned_on_same_data: bool = False,
          interval_seed: int = 0) -> dict[str, Any]:
    """Model metrics next to the trivial baselines, plus plain-English warnings.

    ``intervals``: 95% bootstrap intervals of the headline metrics ({metric: [lo, hi]}, images
    resampled 1,000 times with ``interval_seed``); ``margin_interval``: the model's margin over the
    best trivial baseline on the monitored metric (or the first headline metric), with its interval.
    """

    result: dict[str, Any] = {"task": labels.task, "monitor": monitor, "n_images": int(len(targets))}
    model = compute_metrics(probs, targets, labels, thresholds=np.asarray(thresholds))
    decisions = None
    if labels.multilabel and at_least_one:
        decisions = apply_thresholds(probs, thresholds, at_least_one=True)
        model = _with_decisions(model, decisions, probs, targets, labels)
    result["model"] = model
    if labels.multilabel:
        result["thresholds"] = {n: float(t) for n, t in zip(labels.names, thresholds)}
        result["model_at_0.5"] = _summary(compute_metrics(probs, targets, labels, thresholds=np.full(len(labels), 0.5)))
    freq, common = np.asarray(stats.label_freq), _set_vector(stats, labels)
    result["baselines"] = baseline_scores_from_stats(freq, common, targets, labels)
    boot = bootstrap_intervals(probs, targets, labels, np.asarray(thresholds), seed=interval_seed, monitor=monitor,
                               baseline_probs=baseline_predictions(freq, common, len(targets), labels),
                               decisions=decisions)
    result["intervals"] = boot["intervals"]
    result["margin_interval"] = boot["margin_interval"]
    result["interval_method"] = {"draws": boot["draws"], "level": boot.get("level", 0.95), "seed": interval_seed,
                                 "resampled": "images"}
    result["warnings"] = sanity_warnings(model, result["baselines"], monitor, labels, probs)
    notes: list[str] = []
    if tuned_on_same_data:
        notes.append("Per-class thresholds were tuned on these same validation images, so metrics at "
                     "the tuned thresholds are optimistic; `labelwise evaluate` on held-out images "
                     "gives the honest figure. Threshold-free metrics (map, auroc) are unaffected.")
        if labels.multilabel:
            few = [n for n, f in zip(labels.names, fallback_labels(targets)) if f]
            result["threshold_fallback"] = few
            if few:
                notes.append(f"{len(few)} label(s) had fewer than {MIN_SUPPORT} validation positives, too few to "
                             f"tune a cut-off of their own, and use the global one: {', '.join(few)}.")
    if notes:
        result["notes"] = notes
    return result


def _with_decisions(model: dict, decisions: np.ndarray, probs, targets, labels) -> dict:
    # --at-least-one changes decisions only; rescore with the decisions as hard 0/1 "probabilities" for the
    # thresholded metrics, keeping the ranking metrics of the real probabilities.
    hard = compute_metrics(decisions.astype(np.float64), targets, labels, thresholds=np.full(len(labels), 0.5))
    keep = {k: model[k] for k in model if k.startswith(("map", "auroc"))}
    hard.update(keep)
    return hard
