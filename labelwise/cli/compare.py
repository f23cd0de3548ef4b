"""labelwise compare"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelwise.cli.console import console, out
from labelwise.cli.help import DATA_HELP, ENGINE_HELP, FORMAT_HELP


def compare_command(
    run_a: Path = typer.Argument(..., help="First run directory (model A)."),
    run_b: Path = typer.Argument(..., help="Second run directory (model B)."),
    data: Path = typer.Argument(..., help=DATA_HELP),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    images: Optional[Path] = typer.Option(None, "--images"),
    delimiter: str = typer.Option("auto", "--delimiter", help="Separator between tags in a csv-tags cell."),
    engine: str = typer.Option("torch", "--engine", help=ENGINE_HELP),
    draws: int = typer.Option(1000, "--draws", min=100, help="Bootstrap draws (images resampled, paired)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap resamples (same seed, same interval)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also write the comparison as JSON here."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file that labelwise did not write."),
) -> None:
    """Score two models on the same labelled images and say whether their difference is real (paired bootstrap)."""
    if out_file is not None:
        from labelwise.outputs import check_output_file

        check_output_file(out_file, "json", overwrite)  # before any work
    from rich.table import Table

    from labelwise.infer.compare import compare

    r = compare(run_a, run_b, data, fmt=fmt, images=images, delimiter=delimiter, engine=engine, draws=draws,
                seed=seed, out=out_file)
    table = Table(title=f"A = {run_a}   B = {run_b}   on {r['n_images']} images of {data}")
    for col in ("metric", "A", "B", "A - B", "95% interval", "real?"):
        table.add_column(col, justify="left" if col in ("metric", "real?") else "right")
    for key, m in r["metrics"].items():
        iv = m["interval"]
        table.add_row(key, _f(m["a"]), _f(m["b"]), _f(m["difference"], "+"),
                      "-" if not iv else f"[{iv[0]:+.3f}, {iv[1]:+.3f}]",
                      "yes" if m["real"] else "no")
    out.print(table)
    if r["skipped_images"]:
        console.print(f"[yellow]{r['skipped_images']} image(s) one of the models could not read were left out[/]")
    console.print(r["summary"])
    if r.get("written_to"):
        out.print(f"comparison written to [bold]{r['written_to']}[/]")


def _f(v, sign: str = "") -> str:
    return "-" if v is None or v != v else f"{v:{sign}.3f}"
