"""Samples: what every data source returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labelwise.labels import LabelSpace

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Samples:
    """Image paths with their targets (and optionally the group each image belongs to).

    targets is always a multi-hot uint8 array of shape (N, C), for both tasks: a multi-class row
    has exactly one 1, a multi-label row has any number (zero means "no label").
    groups, when given, is an (N,) array of str or int keys: images sharing a key (augmented
    copies, one scene, one patient) are kept on the same side of every split.
    """

    paths: list[Path]
    targets: np.ndarray
    labels: LabelSpace
    source: str = ""  # the detected format, e.g. "folder", "csv-tags"
    origin: Path | None = None  # the DATA argument that produced these samples
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable files and why
    groups: np.ndarray | None = None  # (N,) group key per image; None = every image is its own group

    def __post_init__(self) -> None:
        import numpy as np

        self.targets = np.asarray(self.targets, dtype=np.uint8).reshape(len(self.paths), len(self.labels))
        if self.groups is not None:
            self.groups = np.asarray(self.groups)
            if self.groups.shape != (len(self.paths),):
                raise ValueError(f"groups must have shape ({len(self.paths)},), got {self.groups.shape}")

    def __len__(self) -> int:
        return len(self.paths)

    def class_index(self) -> np.ndarray:
        """Multi-class targets as int64 indices, shape (N,)."""
        import numpy as np

        return self.targets.argmax(axis=1).astype(np.int64)

    def group_ids(self) -> np.ndarray:
        """Dense int64 group ids in [0, n_groups), shape (N,); every image its own group when none are set."""
        import numpy as np

        if self.groups is None:
            return np.arange(len(self), dtype=np.int64)
        # as str: int and str keys sort together and a mixed object array cannot break np.unique
        return np.unique(self.groups.astype(str), return_inverse=True)[1].astype(np.int64).reshape(-1)

    def subset(self, idx) -> "Samples":
        import numpy as np

        idx = np.asarray(idx, dtype=np.int64)
        return Samples([self.paths[i] for i in idx], self.targets[idx], self.labels, self.source, self.origin,
                       list(self.skipped), None if self.groups is None else self.groups[idx])

    def drop(self, bad: dict[Path, str]) -> "Samples":
        """Return these samples without the paths in ``bad`` (recorded in ``skipped``)."""
        keep = [i for i, p in enumerate(self.paths) if p not in bad]
        out = self.subset(keep)
        out.skipped = list(self.skipped) + [(p, r) for p, r in bad.items()]
        return out
