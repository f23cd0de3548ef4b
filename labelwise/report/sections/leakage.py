"""The Leakage section: validation images that are near-copies of training images."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labelwise.data.duplicates import (
    ALWAYS_SIMILARITY,
    DEFAULT_MIN_SIMILARITY,
    SIDE,
    cross_split_duplicates,
    fingerprint_paths,
)
from labelwise.report.dataset import rows as _rows
from labelwise.report.tiles import Chip, Tile

MAX_PAIRS = 40

if TYPE_CHECKING:
    from labelwise.report.builder import Builder

def leakage_section(b: Builder) -> dict[str, Any]:
    s, v = b.samples, b.run.val
    out: dict[str, Any] = {"pairs": [], "total": 0, "checked": False, "note": "", "threshold": DEFAULT_MIN_SIMILARITY,
                           "always": ALWAYS_SIMILARITY,
                           "side": SIDE}
    if s is None:
        out["note"] = ("Not checked: the training images are not known without the dataset. " + b.data_note)
        return out
    val_set = set(v.paths)
    skipped = {Path(p) for p, _ in b.run.skipped}
    train = [p for p in s.paths if p not in val_set and p not in skipped]
    val = [p for p in v.paths if p.is_file()]
    if not train or not val:
        out["note"] = "Not checked: no training or no validation images found on disk."
        return out
    fp, bad = fingerprint_paths(val + train, b.run.meta.in_chans, workers=b.workers, pixel_spec=b.run.meta.pixel_spec)
    pairs = cross_split_duplicates(fp.take(range(len(val), len(fp))), fp.take(range(len(val))))
    val_rows = {p: i for i, p in enumerate(v.paths)}
    train_rows = {p: i for i, p in enumerate(s.paths)}
    shown = []
    for pair in pairs[:MAX_PAIRS]:
        vp, tp = val[pair.val], train[pair.train]
        given = s.targets[train_rows[tp]].astype(bool)
        chips = [Chip(b.names[j], "given", "label of the training image") for j in np.flatnonzero(given)]
        a = b.tile(val_rows[vp], note="validation")
        t = b._keep(Tile(tp, chips or [Chip("no label", "given", "")], "training"))
        shown.append({"val": a, "train": t, "similarity": pair.similarity})
    out.update(checked=True, pairs=shown, total=len(pairs), n_val=len(val), n_train=len(train),
               val_involved=len({p.val for p in pairs}), flat=int((fp.flat & ~_rows(bad, val + train)).sum()),
               unreadable=len(bad), exact=len({p.val for p in pairs if p.identical}))
    return out
