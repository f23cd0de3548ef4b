"""Build an ensemble bundle from several runs; thresholds re-tuned on shared out-of-sample images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from labelwise.errors import BundleError, LabelwiseError
from labelwise.evaluation.metrics import MONITOR_DEFAULT, to_jsonable
from labelwise.evaluation.scoring import TrainStats, score
from labelwise.evaluation.thresholds import fit_thresholds
from labelwise.io import write_json
from labelwise.models.bundle import load_model, save_model
from labelwise.models.ensemble import Ensemble


def build_ensemble(runs: list[str | Path], out: str | Path, threshold_objective: str = "f1") -> dict:
    """Average several runs (same labels and input spec) into a new bundle at ``out``.

    Thresholds are re-tuned on the out-of-sample predictions the runs share: the images present in
    every run's val_predictions.csv / oof_predictions.csv, with the runs' probabilities averaged there.
    """
    import csv


    if len(runs) < 2:
        raise LabelwiseError("`labelwise ensemble` needs at least two run directories")
    loaded = [load_model(Path(r)) for r in runs]
    meta0 = loaded[0][1]
    for (_, meta), run in zip(loaded[1:], runs[1:]):
        if meta.labels != meta0.labels:
            raise BundleError(f"{run}: labels {list(meta.labels.names)} differ from {runs[0]}'s "
                              f"{list(meta0.labels.names)}; only runs on the same labels can be ensembled")
        if (meta.in_chans, meta.image_size) != (meta0.in_chans, meta0.image_size):
            raise BundleError(f"{run}: input {meta.in_chans}x{meta.image_size}px differs from {runs[0]}'s "
                              f"{meta0.in_chans}x{meta0.image_size}px; retrain with the same --image-size")
        if meta.pixel_spec != meta0.pixel_spec:  # one decode feeds every member
            raise BundleError(f"{run}: its bands / band scaling (model.json input.bands, input.scaling) differ from "
                              f"{runs[0]}'s; ensemble runs trained with the same --bands on the same data")
    members: list[nn.Module] = []
    backbones: list[str] = []
    for model, meta in loaded:  # an ensemble of ensembles is flattened
        if isinstance(model, Ensemble):
            members.extend(model.members)
            backbones.extend(meta.members)
        else:
            members.append(model)
            backbones.append(meta.backbone)
    labels = meta0.labels
    ens = Ensemble(members, labels.multilabel).eval()

    # out-of-sample probabilities shared by all runs
    tables = []
    for run in runs:
        path = next((Path(run) / n for n in ("oof_predictions.csv", "val_predictions.csv")
                     if (Path(run) / n).is_file()), None)
        if path is None:
            tables = []
            break
        with path.open(newline="") as f:
            tables.append({r["image"]: r for r in csv.DictReader(f)})
    common = sorted(set.intersection(*(set(t) for t in tables))) if tables else []
    result: dict = {"members": [str(r) for r in runs], "shared_out_of_sample_images": len(common)}
    if common:
        probs = np.mean([[[float(t[img][n]) for n in labels.names] for img in common] for t in tables], axis=0)
        truth = tables[0]
        targets = np.array([[n in truth[img]["true_labels"].split() if labels.multilabel
                             else truth[img]["true_labels"] == n for n in labels.names] for img in common],
                           dtype=np.uint8)
        thresholds = fit_thresholds(probs, targets, threshold_objective) if labels.multilabel \
            else np.full(len(labels), 0.5)
        stats = TrainStats(tuple(meta0.train_label_freq), tuple(meta0.train_most_common_set))
        result.update(score(probs, targets, labels, thresholds, stats, MONITOR_DEFAULT[labels.task],
                            tuned_on_same_data=labels.multilabel))
    else:
        thresholds = np.mean([np.asarray(m.thresholds) for _, m in loaded], axis=0)
        result["notes"] = ["The runs share no out-of-sample images (different data or splits): thresholds are "
                           "the mean of the members' thresholds and no metrics were computed; use "
                           "`labelwise evaluate` on held-out data."]
    from dataclasses import replace

    meta = replace(meta0, backbone="ensemble", members=tuple(backbones),
                   thresholds=tuple(float(t) for t in thresholds))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_model(out, ens, meta)
    write_json(out / "metrics.json", to_jsonable(result))
    return result


