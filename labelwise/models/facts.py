"""Facts about a run worded once, for the model card (card.py) and the report's Run table: the bands and band
scaling a model decodes with, and the epochs trained against those planned.

>>> pixel_spec_text(PixelSpec(bands=(3, 2, 1), low=(812.0, 640.0, 415.0), high=(3510.0, 2904.0, 2230.0)))
'bands 3,2,1; per-band 1st-99th percentile scaling: 812..3510, 640..2904, 415..2230'
>>> epochs_text({"epochs": 4, "interrupted": True}, {"epochs": 20})
'4 of 20 · interrupted (Ctrl-C / SIGTERM): the model is the best checkpoint so far'
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any

from labelwise.config import TrainConfig
from labelwise.data.band_scaling import PERCENTILES, PixelSpec, format_bands


def _ordinal(p: float) -> str:
    n = f"{p:g}"
    if not n.isdigit():
        return f"{n}th"
    tens, last = int(n) % 100, int(n) % 10
    return n + ("th" if 11 <= tens <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(last, "th"))


def pixel_spec_text(spec: PixelSpec) -> str | None:
    """The bands the model sees and how their samples were scaled; None for the plain decode (every band, 8-bit
    as is, high-bit / 257), which needs no word."""
    parts = []
    if spec.bands is not None:
        parts.append(f"bands {format_bands(spec.bands)}")
    if spec.scaled:
        lo, hi = PERCENTILES
        parts.append(f"per-band {_ordinal(lo)}-{_ordinal(hi)} percentile scaling: "
                     + ", ".join(f"{a:g}..{b:g}" for a, b in zip(spec.low, spec.high)))
    return "; ".join(parts) or None


def pixel_spec_of(inp: dict[str, Any]) -> PixelSpec | None:
    """model.json's ``input`` -> its PixelSpec; None when that part of the file is malformed."""
    try:
        return PixelSpec.from_dict(inp if isinstance(inp, dict) else {})
    except (TypeError, ValueError):
        return None


def planned_epochs(train: dict[str, Any]) -> int | None:
    """The epochs the run was set to train (--epochs, or the default the schema gives), from config.yaml's train."""
    known = {f.name for f in fields(TrainConfig)}
    try:
        return int(TrainConfig(**{k: v for k, v in (train or {}).items() if k in known}).max_epochs)
    except (TypeError, ValueError):
        return None


def epochs_text(run: dict[str, Any], train: dict[str, Any]) -> str:
    """"N of Y" (metrics.json run.epochs of config.yaml train.epochs), marked when the run was interrupted or
    stopped before the plan by --early-stopping / --time-limit."""
    planned, done = planned_epochs(train), run.get("epochs")
    if done is None:  # a k-fold run records epochs per fold, in its fold_N/ bundles
        return f"{planned} planned per fold" if run.get("folds") and planned else "?"
    text = f"{done} of {planned}" if planned else str(done)
    if run.get("interrupted"):
        text += " · interrupted (Ctrl-C / SIGTERM): the model is the best checkpoint so far"
    elif planned and done < planned:
        why = [f"--early-stopping {train['early_stopping']}" if train.get("early_stopping") else "",
               "--time-limit" if train.get("time_limit_s") else ""]
        text += " · stopped early" + (f" ({' or '.join(w for w in why if w)})" if any(why) else "")
    return text
