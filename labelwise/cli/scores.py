"""The scores table: model vs trivial baselines on the key metrics, then warnings."""
from __future__ import annotations

from labelwise.cli.console import (
    console,
    out,
)


def print_scores(m: dict) -> None:
    """Model vs baselines on the key metrics, then warnings."""
    from rich.table import Table

    multilabel = m["task"] == "multilabel"
    keys = {"map": "mAP", "f1_macro": "F1 macro", "f1_micro": "F1 micro", "exact_match": "exact",
            "hamming_accuracy": "hamming"} if multilabel else \
        {"accuracy": "accuracy", "balanced_accuracy": "balanced acc", "f1_macro": "F1 macro"}
    table = Table(title=f"{m['task']} scores on {m['n_images']} images (monitored: {m['monitor']})")
    table.add_column("predictor")
    for title in keys.values():
        table.add_column(title, justify="right")
    intervals = m.get("intervals") or {}
    model = {k: _with_interval(m["model"].get(k), intervals.get(k)) for k in keys}
    rows = [("model" + (" (tuned cut-offs)" if multilabel else ""), model)]
    if intervals:
        table.caption = "model ±: half-width of the 95% bootstrap interval (test images resampled)"
    if multilabel:
        rows.append(("model at 0.5", m["model_at_0.5"]))
    rows += [(f"baseline: {name.replace('_', ' ')}", b) for name, b in m["baselines"].items()]
    for name, vals in rows:
        table.add_row(name, *(v if isinstance(v := vals.get(k), str) else _fmt(v) for k in keys))
    out.print(table)
    margin = m.get("margin_interval")
    if margin and margin.get("interval"):
        lo, hi = margin["interval"]
        base = margin["baseline"].replace("_", " ")
        verdict = "clearly better" if lo > 0 else ("clearly worse" if hi < 0 else "not distinguishable from it")
        console.print(f"margin over the best trivial baseline ({base}) on {margin['metric']}: "
                      f"{margin['margin']:+.3f}, 95% interval [{lo:+.3f}, {hi:+.3f}]: {verdict}")
    for w in m.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {w}")
    for note in m.get("notes", []):
        console.print(f"[dim]note: {note}[/]")


def _fmt(v) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def _with_interval(v, iv) -> str:
    """0.812 and [0.797, 0.827] -> "0.812 ±0.015"; the exact bounds are in the JSON."""
    if not iv or v is None or v != v:
        return _fmt(v)
    return f"{v:.3f} ±{(iv[1] - iv[0]) / 2:.3f}"
