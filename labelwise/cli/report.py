"""`labelwise report RUN [--data DATA] [--out FILE]`: the CLI face of build_report.

Registered in labelwise/cli.py with ``app.command("report")(report_command)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def report_command(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    data: Optional[Path] = typer.Option(None, "--data", help="The training dataset, if it moved since training "
                                        "(default: the path in RUN/config.yaml). Needed for the data summary "
                                        "and the train/validation leakage check."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write (default: RUN/report.html); "
                                       "plots and thumbnails go to a folder beside it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file that labelwise did "
                                   "not write."),
) -> None:
    """Write the error-analysis report (HTML, opens from disk with no server) for a trained run."""
    from rich.console import Console

    from labelwise.errors import DataError
    from labelwise.outputs import check_output_file
    from labelwise.report.build import build_report

    check_output_file(out or run / "report.html", "html", overwrite)
    if data is not None and not data.exists():
        raise DataError(f"--data {data}: no such file or folder; pass the dataset the run was trained on")
    path = build_report(run, data=data, out=out)
    from rich.markup import escape

    from labelwise.report.sections.run import interrupted_line

    if line := interrupted_line(run):  # the page's banner, said on the terminal too
        Console(stderr=True).print("[bold yellow]interrupted:[/] " + escape(line), highlight=False)
    Console().print(f"report: [bold]{path}[/]")
