"""Scoring a model honestly (tuned and 0.5 cut-offs, trivial baselines, sanity warnings) and evaluate()."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .baselines import baseline_scores_from_stats, most_common_row, sanity_warnings
from .labels import LabelSpace
from .metrics import compute_metrics


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
    from .thresholds import apply_thresholds

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


def evaluate(run_dir: str | Path, data: str | Path, *, fmt: str = "auto", images: str | Path | None = None,
             delimiter: str = "auto", strict: bool = False, threshold: float | None = None,
             out: str | Path | None = None, engine: str = "torch", tta: bool = False) -> dict[str, Any]:
    """Score a saved model on a labelled dataset; writes the metrics JSON (default RUN/evaluation.json)."""
    from .bundle import write_json
    from .data.sources import load_samples
    from .errors import DataError
    from .metrics import MONITOR_DEFAULT, to_jsonable
    from .predict import Predictor

    predictor = Predictor.load(run_dir, threshold=threshold, engine=engine, tta=tta)
    meta = predictor.meta
    samples = load_samples(Path(data), fmt=fmt, images=Path(images) if images else None, delimiter=delimiter)
    targets = _align_labels(samples, meta.labels)
    probs_parts, keep_rows, skipped = [], [], []
    offset = 0
    for part, probs, bad in predictor.iter_probs(samples.paths):
        if bad and strict:
            p, reason = next(iter(bad.items()))
            raise DataError(f"{reason}; --strict is set, so unreadable images are errors")
        keep_rows.extend(offset + i for i, p in enumerate(part) if p not in bad)
        skipped.extend(bad.items())
        probs_parts.append(probs)
        offset += len(part)
    if not keep_rows:
        raise DataError(f"{data}: no readable images to evaluate")
    probs = np.concatenate(probs_parts)
    stats = TrainStats(tuple(meta.train_label_freq) or tuple([0.0] * len(meta.labels)), tuple(meta.train_most_common_set))
    result = score(probs, targets[keep_rows], meta.labels, predictor.thresholds, stats, MONITOR_DEFAULT[meta.labels.task],
                   at_least_one=meta.at_least_one)
    result["data"] = str(data)
    result["engine"] = engine
    result["tta"] = tta
    result["skipped_images"] = [{"path": str(p), "reason": r} for p, r in skipped]
    out_path = Path(out) if out else Path(run_dir) / "evaluation.json"
    result = to_jsonable(result)
    write_json(out_path, result)
    result["written_to"] = str(out_path)
    return result


def _align_labels(samples, labels: LabelSpace) -> np.ndarray:
    """Targets of ``samples`` re-ordered into the model's label order; unknown labels are an error."""
    from .errors import DataError

    if samples.labels.task != labels.task:
        raise DataError(f"{samples.origin}: this is a {samples.labels.task} dataset but the model is {labels.task}")
    unknown = [n for n in samples.labels.names if n not in labels.names]
    if unknown:
        raise DataError(f"{samples.origin}: labels {unknown} are unknown to the model (it knows {list(labels.names)})")
    out = np.zeros((len(samples), len(labels)), dtype=np.uint8)
    for j, name in enumerate(samples.labels.names):
        out[:, labels.index(name)] = samples.targets[:, j]
    return out
