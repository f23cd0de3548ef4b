"""Samples: what every data source returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..labels import LabelSpace


@dataclass
class Samples:
    """Image paths with their targets.

    targets is always a multi-hot uint8 array of shape (N, C), for both tasks: a multi-class row
    has exactly one 1, a multi-label row has any number (zero means "no label").
    """

    paths: list[Path]
    targets: np.ndarray
    labels: LabelSpace
    source: str = ""  # the detected format, e.g. "folder", "csv-tags"
    origin: Path | None = None  # the DATA argument that produced these samples
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable files and why

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.uint8).reshape(len(self.paths), len(self.labels))

    def __len__(self) -> int:
        return len(self.paths)

    def class_index(self) -> np.ndarray:
        """Multi-class targets as int64 indices, shape (N,)."""
        return self.targets.argmax(axis=1).astype(np.int64)

    def subset(self, idx) -> "Samples":
        idx = np.asarray(idx, dtype=np.int64)
        return Samples([self.paths[i] for i in idx], self.targets[idx], self.labels, self.source, self.origin,
                       list(self.skipped))

    def drop(self, bad: dict[Path, str]) -> "Samples":
        """Return these samples without the paths in ``bad`` (recorded in ``skipped``)."""
        keep = [i for i, p in enumerate(self.paths) if p not in bad]
        out = self.subset(keep)
        out.skipped = list(self.skipped) + [(p, r) for p, r in bad.items()]
        return out
