"""Ensembles: average the probabilities of several models, as one module that outputs logits.

The output is chosen so that sigmoid / softmax of it gives back the mean member probability, so
everything downstream (thresholds, metrics, export, serving) treats an ensemble like one model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import BundleError, LabelwiseError

EPS = 1e-7  # keeps logit/log finite when a mean probability is exactly 0 or 1


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], multilabel: bool):
        super().__init__()
        if not members:
            raise LabelwiseError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)
        self.multilabel = multilabel
        first = members[0]
        # input spec of the first member (they all share it; checked when building from runs)
        self.register_buffer("mean", first.mean.clone())
        self.register_buffer("std", first.std.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0).clamp(EPS, 1 - EPS)
            return torch.log(p) - torch.log1p(-p)
        p = torch.stack([torch.softmax(m(x), 1) for m in self.members]).mean(0)
        return torch.log(p.clamp_min(EPS))

    @property
    def head(self) -> nn.Module:
        """The first member's head (not registered here: the weights are stored once, in members.0)."""
        return self.members[0].head


def build_ensemble(runs: list[str | Path], out: str | Path, threshold_objective: str = "f1") -> dict:
    """Average several runs (same labels and input spec) into a new bundle at ``out``.

    Thresholds are re-tuned on the out-of-sample predictions the runs share: the images present in
    every run's val_predictions.csv / oof_predictions.csv, with the runs' probabilities averaged there.
    """
    import csv

    from .bundle import load_model, save_model, write_json
    from .evaluation import TrainStats, score
    from .metrics import MONITOR_DEFAULT, to_jsonable
    from .thresholds import fit_thresholds

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
