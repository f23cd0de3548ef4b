"""labelwise inspect"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelwise.cli.console import (
    out,
)
from labelwise.cli.help import DATA_HELP, FORMAT_HELP


def inspect(
    data: Path = typer.Argument(..., help=DATA_HELP),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    images: Optional[Path] = typer.Option(None, "--images"),
    delimiter: str = typer.Option("auto", "--delimiter", help="Separator between tags in a csv-tags cell; auto = whitespace, commas, semicolons or |."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise a dataset: size, task, label counts, label pairs, image sizes and modes, unreadable files."""
    import json

    from labelwise.data.inspect import render_summary, summarize
    from labelwise.data.sources import load_samples

    samples = load_samples(data, fmt=fmt, images=images, delimiter=delimiter)
    summary = summarize(samples)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        render_summary(summary, out)


