"""labelwise suggest"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelwise.cli.console import console


def suggest_command(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    pool: Path = typer.Argument(..., help="Folder of unlabelled images (searched recursively)."),
    n: int = typer.Option(200, "--n", help="How many images to pick."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (default: RUN/review/to_label.csv, "
                                       "which `labelwise review RUN` opens as its to-label queue)."),
) -> None:
    """Pick the unlabelled images most worth labelling: uncertain, spread out, rare labels first."""
    from labelwise.errors import DataError
    from labelwise.infer.suggest import suggest

    if not pool.is_dir():
        raise DataError(f"{pool}: not a folder; pass a folder of unlabelled images")
    result = suggest(run, pool, n=n, out=out)
    console.print(f"scored {result.n_pool:,} images in {result.seconds:.1f} s; picked {len(result.picks)}"
                  + (f"; {len(result.skipped)} unreadable skipped" if result.skipped else ""))
    for p in result.picks[:5]:
        console.print(f"  {p.path.name}: {p.why} (guess: {', '.join(p.guess) or 'no label'})")
    print(f"to-label list: {result.out}")
    console.print(f"[dim]next: labelwise review {run}  (the to-label queue is pre-filled with the guesses)[/]")
