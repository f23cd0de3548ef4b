"""The Scores section: the model against the trivial baselines, per-fold scores of a k-fold run, and the
per-class table (with seed 003's tail accuracy: precision among the N highest-scored images)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from labelwise.evaluation.baselines import BASELINE_DESCRIPTIONS
from labelwise.evaluation.metrics import (
    HIGHER_IS_BETTER,
    finite_or_none,
    multilabel_metrics,
)
from labelwise.evaluation.names import metric_help
from labelwise.report.analysis import confusion_counts, readable
from labelwise.report.format import num

if TYPE_CHECKING:
    from labelwise.report.builder import Builder

TAIL_N = (10, 50)  # tail accuracy: precision among the N highest-scored images per label
SCORE_KEYS = {
    "multilabel": ("map", "auroc_macro", "f1_macro", "f1_micro", "f1_weighted", "f1_samples", "precision_macro",
                   "recall_macro", "exact_match", "hamming_accuracy", "mean_pred_labels", "empty_pred_share"),
    "multiclass": ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro",
                   "top5_accuracy", "top3_accuracy", "top_pred_share"),
}
_TRUTH_KEYS = {"mean_pred_labels": "mean_true_labels", "empty_pred_share": "empty_true_share",
               "top_pred_share": "top_true_share"}


def scores_section(b: Builder) -> dict[str, Any]:
    oof = b.run.val.source == "oof"
    title = "Out-of-fold (every image, scored by the fold model that did not train on it)" if oof else "Validation"
    tables = [_score_table(b, b.run.metrics, title, f"{len(b.run.val):,} images")]
    ev = b.run.evaluation
    if ev:
        tables.append(_score_table(b, ev, "Held-out test (evaluation.json)",
                                   f"{ev.get('n_images', '?'):,} images from {ev.get('data', '?')}"))
    return {"tables": tables, "folds": folds_table(b), "tail_n": TAIL_N}


def folds_table(b: Builder) -> dict[str, Any] | None:
    """metrics["folds"] of a k-fold run: one column per fold, then mean and standard deviation."""
    f = b.run.metrics.get("folds")
    if not isinstance(f, dict) or not f.get("per_fold"):
        return None
    per_fold, mean, std = f["per_fold"], f.get("mean") or {}, f.get("std") or {}
    rows = []
    for key in SCORE_KEYS[b.task]:
        if key not in mean:
            continue
        rows.append({"name": readable(key), "cells": [finite_or_none(x.get(key)) for x in per_fold],
                     "mean": finite_or_none(mean.get(key)), "std": finite_or_none(std.get(key))})
    return {"k": f.get("k", len(per_fold)), "rows": rows}


def tail_precision(probs: np.ndarray, targets: np.ndarray, n: int) -> list[float | None]:
    """Per label: the share of the ``n`` highest-scored images that carry it (None with fewer images)."""
    if len(probs) < n:
        return [None] * probs.shape[1]
    top = np.argsort(-probs, axis=0, kind="stable")[:n]
    return [float(targets[top[:, j], j].mean()) for j in range(probs.shape[1])]


def _score_table(b: Builder, m: dict[str, Any], title: str, subtitle: str) -> dict[str, Any]:
    model = m.get("model") or {}
    cols: list[tuple[str, str, dict]] = [("model", "model" + (" (tuned thresholds)" if b.labels.multilabel else ""),
                                          model)]
    if "model_at_0.5" in m:
        cols.append(("model05", "model at 0.5", m["model_at_0.5"]))

    for name, base in (m.get("baselines") or {}).items():
        cols.append(("baseline", name.replace("_", " "), base | {"_help": BASELINE_DESCRIPTIONS.get(name, "")}))
    monitor = m.get("monitor")
    rows = []
    for key in SCORE_KEYS[b.task]:
        if key not in model:
            continue
        values = [finite_or_none(c[2].get(key)) for c in cols]
        direction = HIGHER_IS_BETTER.get(key)
        finite = [v for v in values if v is not None]
        best = (max(finite) if direction else min(finite)) if finite and direction is not None else None
        help_ = metric_help(key)
        if key in _TRUTH_KEYS and finite_or_none(model.get(_TRUTH_KEYS[key])) is not None:
            help_ = help_.format(truth=num(model.get(_TRUTH_KEYS[key])))
        rows.append({"key": key, "name": readable(key), "help": help_, "monitor": key == monitor,
                     "cells": [{"value": v, "best": best is not None and v is not None and abs(v - best) < 1e-9}
                               for v in values]})
    return {"title": title, "subtitle": subtitle,
            "cols": [{"kind": k, "name": n, "help": c.get("_help", "")} for k, n, c in cols], "rows": rows,
            "warnings": list(m.get("warnings") or []), "notes": list(m.get("notes") or [])}


def per_class_rows(b: Builder) -> list[dict[str, Any]]:
    v, run = b.run.val, b.run
    pc = (run.metrics.get("model") or {}).get("per_class") or {}
    # AP/AUROC per class for both tasks (multi-class one-vs-rest), from the saved predictions.
    ranked = multilabel_metrics(v.probs, v.targets, 0.5, b.names)["per_class"] if len(v) else {}
    counts = confusion_counts(v.targets, b.pred)
    freq = run.meta.train_label_freq or ()
    tails = {n: tail_precision(v.probs, v.targets, n) for n in TAIL_N}
    rows = []
    for j, name in enumerate(b.names):
        src = pc.get(name) or {}
        row = {"name": name,
               "support": int(src.get("support", counts["tp"][j] + counts["fn"][j])),
               "predicted": int(src.get("predicted", counts["tp"][j] + counts["fp"][j])),
               "precision": finite_or_none(src.get("precision")), "recall": finite_or_none(src.get("recall")),
               "f1": finite_or_none(src.get("f1")),
               "ap": finite_or_none(src.get("ap", ranked.get(name, {}).get("ap"))),
               "auroc": finite_or_none(src.get("auroc", ranked.get(name, {}).get("auroc"))),
               "threshold": float(run.thresholds[j]) if b.labels.multilabel else None,
               "train_freq": float(freq[j]) if j < len(freq) else None,
               "tp": int(counts["tp"][j]), "fp": int(counts["fp"][j]), "fn": int(counts["fn"][j]),
               "tn": int(counts["tn"][j]), "tail": [tails[n][j] for n in TAIL_N]}
        rows.append(row)
    return rows


