"""train(): prepare once, then one split or k folds, and the bundle."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable

from labelwise.config import RunConfig
from labelwise.data.splits import train_val_split
from labelwise.outputs import RunLock, check_resume_options, check_run_dir, disk_errors
from labelwise.training import interrupt
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
    # --out is a checked decision before any work (labelwise.outputs); --overwrite is not a setting of the run
    plan = check_run_dir(cfg.out, cfg.data.data, resume=resume, overwrite=cfg.train.overwrite, config=cfg)
    cfg = cfg.with_(train=replace(cfg.train, overwrite=False))
    with RunLock(plan.out), disk_errors(plan.out):
        for note in plan.notes:
            log.info(note)
            if on_note and _is_rank_zero():
                on_note(note)
        prep = prepare(cfg, on_skipped, on_note)
        if plan.action == "resume" and plan.saved is not None:
            check_resume_options(plan.saved, prep.cfg, plan.out)  # now with every `auto` resolved
        plan.clear_stale()
        for line in prep.option_warnings:
            # a caller that prints warnings (the CLI) gets it once: without a logging handler configured, Python
            # writes log.warning to stderr as well
            (log.info if on_warning else log.warning)(line)
            if on_warning and _is_rank_zero():
                on_warning(line)
        with interrupt.stop_on_signal():  # Ctrl-C / SIGTERM from here on: stop gracefully, keep the best so far
            if cfg.train.folds > 1:
                return train_folds(prep, resume=resume, progress=progress, on_warning=on_warning)
            run_dir = Path(cfg.out)
            train_idx, val_idx = train_val_split(prep.samples, prep.cfg.data.val_split, cfg.train.seed)
            check_duplicates(prep, [(train_idx, val_idx)], on_warning)
            fitted = fit(prep, train_idx, val_idx, run_dir, resume=resume, progress=progress)
            if fitted is None:
                return None
            return finalize(prep, fitted, train_idx, val_idx, run_dir)


