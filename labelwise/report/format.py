"""Number and text formatting shared by the report's sections and its template."""
from __future__ import annotations

from typing import Any

import numpy as np

from labelwise.evaluation.metrics import finite_or_none


def bad(v: Any) -> bool:
    return finite_or_none(v) is None


def num(v: Any, digits: int = 3) -> str:
    """Counts with thousands separators; scores with ``digits`` decimals; tiny values in e-notation."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    f = finite_or_none(v)
    if f is None:
        return "–"
    if abs(f) >= 10:
        return f"{f:,.1f}"
    if abs(f) < 1e-3 and f != 0:
        return f"{f:.1e}"
    return f"{f:.{digits}f}"


def duration(s: Any) -> str:
    f = finite_or_none(s)
    if f is None:
        return "?"
    if f < 120:
        return f"{f:.0f} s"
    if f < 7200:
        return f"{f / 60:.1f} min"
    return f"{f / 3600:.1f} h"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def split_counts(r: dict[str, Any], n_val: int) -> str:
    if not isinstance(r.get("train_images"), int):
        return f"{n_val:,} validation"
    return (f"{r['train_images']:,} train · {r.get('val_images', n_val):,} validation · "
            f"{r.get('skipped_images', 0)} skipped")


def mistake(m: dict[str, Any], multilabel: bool) -> str:
    if not multilabel:
        return f"{m['true']} taken for {m['predicted']}"
    if m["true"] == "(nothing)":
        return f"adds {m['predicted']} wrongly"
    if m["predicted"] == "(nothing)":
        return f"misses {m['true']}"
    return f"{m['true']} taken for {m['predicted']}"
