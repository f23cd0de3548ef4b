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
    rows = [("model" + (" (tuned cut-offs)" if multilabel else ""), m["model"])]
    if multilabel:
        rows.append(("model at 0.5", m["model_at_0.5"]))
    rows += [(f"baseline: {name.replace('_', ' ')}", b) for name, b in m["baselines"].items()]
    for name, vals in rows:
        table.add_row(name, *(_fmt(vals.get(k)) for k in keys))
    out.print(table)
    for w in m.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {w}")
    for note in m.get("notes", []):
        console.print(f"[dim]note: {note}[/]")


def _fmt(v) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


