"""train(): prepare once, then one split or k folds, and the bundle."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from labelwise.config import RunConfig
from labelwise.data.splits import train_val_split
from labelwise.training.fit import TrainResult, finalize, fit
from labelwise.training.folds import train_folds
from labelwise.training.prepare import _is_rank_zero, check_duplicates, prepare

log = logging.getLogger("labelwise")


def train(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
          on_skipped: Callable[[list[tuple[Path, str]]], None] | None = None,
          on_warning: Callable[[str], None] | None = None,
          on_note: Callable[[str], None] | None = None) -> TrainResult | None:
    """Train a classifier as configured and write the run directory (the model bundle).

    With ``cfg.train.folds`` > 1 it runs k-fold cross-validation instead (see ``train_folds``).
    Returns None in the non-zero ranks of a distributed run.
    """
    prep = prepare(cfg, on_skipped, on_note)
    for line in prep.option_warnings:
        log.warning(line)
        if on_warning and _is_rank_zero():
            on_warning(line)
    if cfg.train.folds > 1:
        return train_folds(prep, resume=resume, progress=progress, on_warning=on_warning)
    run_dir = Path(cfg.out)
    train_idx, val_idx = train_val_split(prep.samples, cfg.data.val_split, cfg.train.seed)
    check_duplicates(prep, [(train_idx, val_idx)], on_warning)
    fitted = fit(prep, train_idx, val_idx, run_dir, resume=resume, progress=progress)
    if fitted is None:
        return None
    return finalize(prep, fitted, train_idx, val_idx, run_dir)


