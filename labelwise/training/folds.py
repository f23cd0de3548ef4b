"""k-fold cross-validation: one model per fold, out-of-fold predictions, the fold ensemble as the bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from labelwise.data.splits import kfold_splits
from labelwise.evaluation.metrics import summary_of, to_jsonable
from labelwise.evaluation.scoring import score, train_stats
from labelwise.io import write_json
from labelwise.models.bundle import save_model
from labelwise.models.card import write_card
from labelwise.models.ensemble import Ensemble
from labelwise.training.fit import (
    TrainResult,
    _meta,
    _write_predictions,
    _write_skipped,
    finalize,
    fit,
    fit_thresholds_for,
)
from labelwise.training.prepare import Prepared, check_duplicates, use_pretrained


def train_folds(prep: Prepared, *, resume: bool = False, progress: bool = True,
                on_warning: Callable[[str], None] | None = None) -> TrainResult | None:
    """k-fold cross-validation: one model per fold in RUN/fold_<i>/, out-of-fold probabilities for every
    image in RUN/oof_predictions.csv, per-fold metrics with mean and spread, and at RUN/ an ensemble of
    the fold models (thresholds tuned on the out-of-fold probabilities) that predict/evaluate accept."""

    cfg, labels, y = prep.cfg, prep.labels, prep.samples.targets
    run_dir = Path(cfg.out)
    k = cfg.train.folds
    oof = np.full((len(y), len(labels)), np.nan, dtype=np.float32)
    fold_results, models, wall = [], [], 0.0
    splits = kfold_splits(prep.samples, k, cfg.train.seed)
    check_duplicates(prep, splits, on_warning)
    for i, (train_idx, val_idx) in enumerate(splits):
        fold_dir = run_dir / f"fold_{i + 1}"
        fitted = fit(prep, train_idx, val_idx, fold_dir, resume=resume, progress=progress)
        if fitted is None:
            return None
        result = finalize(prep, fitted, train_idx, val_idx, fold_dir)
        oof[val_idx] = fitted.val_probs
        fold_results.append(result)
        models.append(fitted.model)
        wall += fitted.wall_s
    thresholds = fit_thresholds_for(prep, oof, y)
    stats = train_stats(y, labels)
    metrics = score(oof, y, labels, thresholds, stats, prep.monitor, at_least_one=cfg.train.at_least_one,
                    tuned_on_same_data=labels.multilabel and cfg.train.threshold is None)
    metrics["data_warnings"] = list(prep.warnings)
    per_fold = [summary_of(r.metrics["model"]) for r in fold_results]
    keys = [key for key, v in per_fold[0].items() if isinstance(v, (int, float))]
    metrics["folds"] = {
        "k": k, "per_fold": per_fold,
        "mean": {key: float(np.nanmean([f[key] for f in per_fold])) for key in keys},
        "std": {key: float(np.nanstd([f[key] for f in per_fold])) for key in keys},
    }
    metrics["notes"] = metrics.get("notes", []) + [
        f"Scores are out-of-fold: each image is scored by the fold model that did not train on it ({k} folds). "
        "The bundle in this folder is the ensemble of the fold models."]
    metrics["run"] = {"train_images": int(len(y)), "val_images": int(len(y)), "folds": k,
                      "backbone": cfg.model.backbone, "pretrained": use_pretrained(cfg.model),
                      "strategy": cfg.train.strategy, "choices": list(prep.notes),
                      "skipped_images": len(prep.samples.skipped), "wall_time_s": round(wall, 1)}
    ensemble = Ensemble(models, labels.multilabel)
    members = tuple(cfg.model.backbone for _ in models)
    save_model(run_dir, ensemble, _meta(prep, models[0], thresholds, stats, backbone="ensemble", members=members))
    write_json(run_dir / "metrics.json", to_jsonable(metrics))
    cfg.save(run_dir / "config.yaml")
    _write_predictions(run_dir / "oof_predictions.csv", prep.samples.paths, y, oof, labels)
    _write_skipped(prep, run_dir)
    write_card(run_dir)  # README.md; no hub/: timm loads one network, not the fold ensemble
    epochs = sum(r.epochs_run for r in fold_results)
    return TrainResult(run_dir, metrics, prep.samples.skipped, wall / max(1, epochs), epochs)


