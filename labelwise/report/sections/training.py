"""The Training section: loss and learning rate per epoch, and the main metrics per epoch on the
validation images and on a fixed sample of training images scored without augmentation (the
``train_*`` columns of history.csv), so that the train/validation gap is visible."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelwise.evaluation.metrics import MONITOR_DEFAULT
from labelwise.report import plots
from labelwise.report.analysis import readable
from labelwise.report.rundata import read_history

if TYPE_CHECKING:
    from labelwise.report.builder import Builder

CURVE_KEYS = {
    "multilabel": ("map", "f1_macro", "f1_micro", "f1_weighted", "exact_match", "hamming_accuracy",
                   "precision_macro", "recall_macro"),
    "multiclass": ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted"),
}


def training_section(b: Builder) -> dict[str, Any]:
    h, where = b.run.history, ""
    if not h and b.run.val.source == "oof":  # k-fold: each fold has its own history; show the first
        folds = sorted(Path(b.run.run_dir).glob("fold_*/history.csv"))
        if folds:
            h, where = read_history(folds[0]), f"Fold 1 of {len(folds)} (each fold has its history.csv in fold_<i>/)."
    if not h:
        return {"figure": None, "rows": [], "metrics": None, "where": ""}
    monitor = b.run.metrics.get("monitor") or MONITOR_DEFAULT[b.task]
    key = "val_loss" if monitor == "loss" else monitor
    best = (b.run.metrics.get("run") or {}).get("best_checkpoint_epoch") or None if not where else None
    fig = b.figure(plots.training(h, key, readable(key), best), "training", "training curves")
    keys = [k for k in CURVE_KEYS[b.task] if k in h[0]]
    has_train = any(f"train_{k}" in h[0] for k in keys)
    metrics = b.figure(plots.metric_curves(h, keys, [readable(k) for k in keys], best), "metric_curves",
                       "metrics per epoch, validation and training sample") if keys else None
    cols = [c for c in ("train_loss", "val_loss", key, f"train_{key}" if key != "val_loss" else "", "lr", "elapsed_s")
            if c and c in h[0]]
    rows = [{"epoch": int(r.get("epoch", i + 1)), "best": int(r.get("epoch", i + 1)) == best,
             "cells": [r.get(c) for c in cols]} for i, r in enumerate(h)]
    names = ["elapsed (s)" if c == "elapsed_s" else (f"{readable(c[6:])} (train sample)" if c.startswith("train_")
                                                    and c != "train_loss" else readable(c)) for c in cols]
    return {"figure": fig, "metrics": metrics, "has_train": has_train, "cols": names, "where": where,
            "rows": rows if len(rows) <= 60 else rows[-60:], "best": best}
