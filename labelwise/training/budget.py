"""--time-limit is the user's: the whole command fits in it, not only the training loop.

A run spends its budget in four places: listing and decoding the images (``prepare``), training
(epochs, validation included), scoring the best model on validation and writing the bundle, and the
report (``labelwise train`` builds RUN/report.html afterwards). Training is the only part that can
stretch or shrink, so it gets what the others leave:

    training budget = limit - what preparation took (measured) - the report (estimated)

and ``LitClassifier._plan_for_budget`` keeps a measured share of that (``after_training_reserve_s``) for
scoring and writing the bundle. The
epoch plan then fits the schedule into the training budget as before (it re-plans from measured epochs).

>>> training_limit_s(600, spent_s=48.0, report_s=8.0)
544.0
"""
from __future__ import annotations

from dataclasses import replace

from labelwise.config import TrainConfig

# The report (plots, galleries) took 19-21 s on a 2-core CPU under heavy load for 500 and 4,000
# images alike, i.e. it hardly grows with the data; a few seconds on an idle machine.
REPORT_S = 8.0
REPORT_MAX_SHARE = 0.05  # never reserve more than this share of the budget for it
# Whatever preparation took, training keeps at least this share (one epoch must be possible).
MIN_TRAINING_SHARE = 0.2


def report_reserve_s(limit_s: float) -> float:
    """Seconds kept for the report out of a ``limit_s`` budget."""
    return min(REPORT_S, REPORT_MAX_SHARE * limit_s)


def training_limit_s(limit_s: float, spent_s: float, report_s: float | None = None) -> float:
    """The share of ``limit_s`` left for training once ``spent_s`` are gone (listing, decoding, set-up)
    and the report is planned in."""
    report = report_reserve_s(limit_s) if report_s is None else report_s
    return max(MIN_TRAINING_SHARE * limit_s, limit_s - spent_s - report)


def for_training(tcfg: TrainConfig, spent_s: float) -> TrainConfig:
    """``tcfg`` with --time-limit reduced to the training share (unchanged without a time limit).

    Only the training loop sees this copy: config.yaml keeps the user's limit."""
    if not tcfg.time_limit_s:
        return tcfg
    return replace(tcfg, time_limit_s=training_limit_s(tcfg.time_limit_s, spent_s))
