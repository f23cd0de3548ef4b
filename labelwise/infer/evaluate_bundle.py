"""evaluate(): score a saved bundle on labelled data, next to the trivial baselines."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from labelwise.data.sources import load_samples
from labelwise.errors import DataError
from labelwise.evaluation.metrics import MONITOR_DEFAULT, to_jsonable
from labelwise.evaluation.scoring import TrainStats, score
from labelwise.infer.predict import Progress, Predictor
from labelwise.io import write_json
from labelwise.labels import LabelSpace


def evaluate(run_dir: str | Path, data: str | Path, *, fmt: str = "auto", images: str | Path | None = None,
             delimiter: str = "auto", strict: bool = False, threshold: float | None = None,
             out: str | Path | None = None, engine: str = "torch", tta: bool = False,
             progress: Progress = False) -> dict[str, Any]:
    """Score a saved model on a labelled dataset; writes the metrics JSON (default RUN/evaluation.json).
    ``progress``: as for Predictor.iter_probs (True: a bar on stderr, or a callback(done, total))."""

    predictor = Predictor.load(run_dir, threshold=threshold, engine=engine, tta=tta)
    meta = predictor.meta
    samples = load_samples(Path(data), fmt=fmt, images=Path(images) if images else None, delimiter=delimiter)
    targets = _align_labels(samples, meta.labels)
    probs_parts, keep_rows, skipped = [], [], []
    offset = 0
    for part, probs, bad in predictor.iter_probs(samples.paths, progress=progress):
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
    result["tta_views"] = [v.name for v in getattr(predictor.engine, "views", ())]
    result["skipped_images"] = [{"path": str(p), "reason": r} for p, r in skipped]
    out_path = Path(out) if out else Path(run_dir) / "evaluation.json"
    result = to_jsonable(result)
    write_json(out_path, result)
    result["written_to"] = str(out_path)
    return result


def _align_labels(samples, labels: LabelSpace) -> np.ndarray:
    """Targets of ``samples`` re-ordered into the model's label order; unknown labels are an error."""

    if samples.labels.task != labels.task:
        raise DataError(f"{samples.origin}: this is a {samples.labels.task} dataset but the model is {labels.task}")
    unknown = [n for n in samples.labels.names if n not in labels.names]
    if unknown:
        raise DataError(f"{samples.origin}: labels {unknown} are unknown to the model (it knows {list(labels.names)})")
    out = np.zeros((len(samples), len(labels)), dtype=np.uint8)
    for j, name in enumerate(samples.labels.names):
        out[:, labels.index(name)] = samples.targets[:, j]
    return out


