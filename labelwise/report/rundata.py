"""Read what a run directory holds (see labelwise/training.py) into plain arrays for the report."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from labelwise.errors import BundleError
from labelwise.io import read_json_object
from labelwise.labels import LabelSpace, split_label_names
from labelwise.models.bundle import ModelMeta, read_meta

PREDICTION_FILES = {"val": "val_predictions.csv", "oof": "oof_predictions.csv"}


@dataclass
class Predictions:
    """Out-of-sample predictions: one row per image, columns in the model's label order."""

    paths: list[Path]
    targets: np.ndarray  # (N, C) uint8 multi-hot (one-hot for multi-class)
    probs: np.ndarray  # (N, C) float64
    source: str  # "val" or "oof"

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class RunData:
    run_dir: Path
    meta: ModelMeta
    metrics: dict[str, Any]
    config: dict[str, Any]
    history: list[dict[str, float]]
    val: Predictions
    oof: Predictions | None
    evaluation: dict[str, Any] | None
    skipped: list[tuple[str, str]]

    @property
    def labels(self) -> LabelSpace:
        return self.meta.labels

    @property
    def thresholds(self) -> np.ndarray:
        return np.asarray(self.meta.thresholds, dtype=np.float64)


def load_run(run_dir: Path) -> RunData:
    """Read a run directory; missing or malformed required files raise BundleError naming them."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    metrics = _read_json(run_dir / "metrics.json", required=True)
    evaluation = _read_json(run_dir / "evaluation.json", required=False)
    config = _read_yaml(run_dir / "config.yaml")
    val_path, oof_path = run_dir / PREDICTION_FILES["val"], run_dir / PREDICTION_FILES["oof"]
    oof = read_predictions(oof_path, meta.labels, "oof") if oof_path.is_file() else None
    if val_path.is_file():
        val = read_predictions(val_path, meta.labels, "val")
    elif oof is not None:
        val = oof  # a k-fold run: every image scored once, by the fold model that did not see it
    else:
        raise BundleError(f"{val_path}: missing; the report needs the validation predictions that "
                          "`labelwise train` writes. Re-run training into this folder.")
    return RunData(run_dir, meta, metrics, config, read_history(run_dir / "history.csv"), val, oof,
                   evaluation, _read_skipped(run_dir / "skipped_images.csv"))


def read_predictions(path: Path, labels: LabelSpace, source: str) -> Predictions:
    """Parse ``image,true_labels,<one probability column per label>`` into the model's label order."""
    rows = _read_csv_rows(path)
    if not rows or rows[0][:2] != ["image", "true_labels"]:
        raise BundleError(f"{path}: expected a header 'image,true_labels,<label>...'")
    header = rows[0]
    missing = [n for n in labels.names if n not in header[2:]]
    if missing:
        raise BundleError(f"{path}: no probability column for labels {missing}; was it written by "
                          "another model? Re-run `labelwise train`.")
    cols = [header.index(n) for n in labels.names]
    paths: list[Path] = []
    targets = np.zeros((len(rows) - 1, len(labels)), dtype=np.uint8)
    probs = np.zeros((len(rows) - 1, len(labels)), dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        line = i + 2
        if len(row) != len(header):
            raise BundleError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        paths.append(Path(row[0]))
        for name in parse_label_cell(row[1], labels):
            targets[i, labels.index(name)] = 1
        try:
            probs[i] = [float(row[c]) for c in cols]
        except ValueError:
            raise BundleError(f"{path}, line {line}: a probability is not a number") from None
    if not np.isfinite(probs).all():
        raise BundleError(f"{path}: probabilities contain NaN or infinity")
    return Predictions(paths, targets, probs, source)


def parse_label_cell(cell: str, labels: LabelSpace) -> list[str]:
    """Split a ``true_labels`` cell (names joined by spaces) back into label names.

    A label name may itself contain spaces (a class folder "t shirt"), so tokens are joined
    greedily into the longest known name. Unknown leftovers raise BundleError.
    """
    cell = cell.strip()
    if not cell:
        return []
    known = set(labels.names)
    if cell in known:
        return [cell]
    names, unknown = split_label_names(cell, known)
    if unknown:
        raise BundleError(f"true label {unknown[0]!r} is not one of the model's labels {list(labels.names)}")
    return names


def read_history(path: Path) -> list[dict[str, float]]:
    """history.csv rows as floats (NaN where a cell is empty); [] when the file is missing."""
    if not path.is_file():
        return []
    rows = _read_csv_rows(path)
    if not rows:
        return []
    out = []
    for row in rows[1:]:
        rec = {}
        for key, cell in zip(rows[0], row):
            try:
                rec[key] = float(cell) if cell != "" else math.nan
            except ValueError:
                rec[key] = math.nan
        out.append(rec)
    return out


def _read_skipped(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    rows = _read_csv_rows(path)
    return [(r[0], r[1] if len(r) > 1 else "") for r in rows[1:] if r]


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [row for row in csv.reader(f) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise BundleError(f"{path}: cannot read ({e})") from None


def _read_json(path: Path, required: bool) -> dict[str, Any] | None:
    if not path.is_file():
        if required:
            raise BundleError(f"{path}: missing; the report needs the metrics `labelwise train` writes")
        return None
    return read_json_object(path)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise BundleError(f"{path}: not valid YAML ({e})") from None
    return d if isinstance(d, dict) else {}
