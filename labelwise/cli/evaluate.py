"""labelwise evaluate"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelwise.cli.console import (
    _print_skipped,
    console,
    out,
)
from labelwise.cli.help import DATA_HELP, ENGINE_HELP, FORMAT_HELP, TTA_HELP, TTA_VIEWS_HELP, tta_option
from labelwise.cli.scores import print_scores


def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    data: Path = typer.Argument(..., help=DATA_HELP),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    images: Optional[Path] = typer.Option(None, "--images"),
    delimiter: str = typer.Option("auto", "--delimiter", help="Separator between tags in a csv-tags cell; auto = whitespace, commas, semicolons or |."),
    strict: bool = typer.Option(False, "--strict"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One global cut-off instead of the tuned ones."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Metrics JSON to write (default RUN/evaluation.json)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file that labelwise did not write."),
    engine: str = typer.Option("torch", "--engine", help=ENGINE_HELP),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    tta_views: Optional[int] = typer.Option(None, "--tta-views", metavar="N", help=TTA_VIEWS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout (for scripts; the "
                                 "skipped images and notes still go to stderr)."),
) -> None:
    """Score a trained model on a labelled dataset, next to trivial baselines."""
    from labelwise.outputs import check_output_file

    check_output_file(out_file or run / "evaluation.json", "json", overwrite)  # before any work
    from labelwise.infer.evaluate_bundle import evaluate as run_evaluate

    result = run_evaluate(run, data, fmt=fmt, images=images, delimiter=delimiter, strict=strict,
                          threshold=threshold, out=out_file, engine=engine, tta=tta_option(tta, tta_views),
                          progress=True)
    if out_file is None and (run / "README.md").is_file():  # the model card gains the held-out scores
        from labelwise.models.card import write_card

        write_card(run)
    _print_skipped([(Path(s["path"]), s["reason"]) for s in result["skipped_images"]])
    from rich.markup import escape

    from labelwise.report.sections.run import interrupted_line

    if line := interrupted_line(run):  # the scores are those of an unfinished run's best-so-far model
        console.print("[bold yellow]interrupted:[/] " + escape(line), highlight=False)
    if as_json:
        import json

        print(json.dumps(result, indent=2))
        console.print(f"metrics written to {result['written_to']}")
        return
    print_scores(result)
    out.print(f"metrics written to [bold]{result['written_to']}[/]")


