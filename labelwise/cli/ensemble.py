"""labelwise ensemble"""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from labelwise.cli.console import (
    console,
    out,
)
from labelwise.cli.scores import print_scores


def ensemble(
    runs: List[Path] = typer.Argument(..., help="Two or more run directories (same labels and input size)."),
    out_dir: Path = typer.Option(..., "--out", help="Run directory to write the ensemble bundle to."),
    threshold_objective: str = typer.Option("f1", "--threshold-objective", help="f1, precision@P or recall@R."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the bundle in an existing --out folder."),
) -> None:
    """Average several runs' probabilities into one bundle; thresholds re-tuned on shared out-of-sample images."""
    from labelwise.infer.ensemble import build_ensemble
    from labelwise.outputs import check_bundle_out

    check_bundle_out(out_dir, overwrite, reading=list(runs))  # never one of the runs it reads
    result = build_ensemble(runs, out_dir, threshold_objective)
    if "model" in result:
        print_scores(result)
    for note in result.get("notes", []):
        console.print(f"[dim]note: {note}[/]")
    out.print(f"ensemble of {len(runs)} runs written to [bold]{out_dir}[/]")


