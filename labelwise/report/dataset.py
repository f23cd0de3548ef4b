"""Where the run's dataset is now, read back for the report (summary, leakage check, moved images)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from labelwise.data.sources import load_samples
from labelwise.errors import LabelwiseError
from labelwise.report.rundata import Predictions, RunData


def load_dataset(run: RunData, data: str | Path | None):
    """(Samples or None, a note saying what was used or why not)."""

    d = run.config.get("data") or {}
    where = Path(data) if data else find_data(Path(str(d.get("data") or "")), run.val.paths)
    if where is None or str(where) in ("", "."):
        return None, "The dataset path is not recorded in config.yaml; pass --data DATA to `labelwise report`."
    if not where.exists():
        return None, f"The dataset {where} was not found; pass --data DATA to `labelwise report`."
    images = d.get("images")
    try:
        s = load_samples(where, fmt=str(d.get("format") or "auto"),
                         images=Path(images) if images and Path(images).exists() else None,
                         delimiter=str(d.get("delimiter") or " "))
    except LabelwiseError as e:
        return None, f"The dataset could not be read ({e}); pass --data DATA to `labelwise report`."
    if set(s.labels.names) - set(run.labels.names):
        return None, (f"{where} has labels the model does not know "
                      f"({sorted(set(s.labels.names) - set(run.labels.names))[:5]}); is it the training set?")
    return s, f"Dataset: {where.resolve()}"


def find_data(recorded: Path, val_paths: list[Path]) -> Path | None:
    """Where the recorded (possibly relative) data path is: as given, else beside an ancestor of
    a validation image (training ran in another working directory)."""
    if not str(recorded) or str(recorded) == "." or recorded.exists() or recorded.is_absolute():
        return recorded
    for image in val_paths[:1]:
        for folder in image.parents:
            if (folder / recorded).exists():
                return folder / recorded
    return recorded


def relocate(p: Predictions, dataset_paths: list[Path]) -> None:
    """Point predictions whose image moved at the dataset's copy (matched by folder + file name)."""
    if all(x.is_file() for x in p.paths[:50]) and all(x.is_file() for x in p.paths):
        return
    by_two = {(x.parent.name, x.name): x for x in dataset_paths}
    by_name: dict[str, Path | None] = {}
    for x in dataset_paths:
        by_name[x.name] = None if x.name in by_name else x  # None marks an ambiguous name
    p.paths = [x if x.is_file() else (by_two.get((x.parent.name, x.name)) or by_name.get(x.name) or x)
               for x in p.paths]


def rows(paths: dict[Path, str], order: list[Path]) -> np.ndarray:
    """Boolean mask over ``order``: True where the path is a key of ``paths``."""
    return np.array([p in paths for p in order], dtype=bool)
