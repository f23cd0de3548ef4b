"""labelwise predict"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from labelwise.cli.console import (
    _note,
    out,
)
from labelwise.cli.help import ENGINE_HELP, TTA_HELP, TTA_VIEWS_HELP, tta_option
from labelwise.errors import LabelwiseError


def predict(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    inputs: List[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    out_file: Path = typer.Option(Path("predictions.csv"), "--out", help="File to write (CSV or JSON Lines)."),
    out_format: str = typer.Option("auto", "--format", metavar="[auto|csv|jsonl]",
                                   help="csv (one row per image, a column per label) or jsonl (one JSON object per "
                                        "line: image, labels, probabilities, error); auto: jsonl for a .jsonl --out."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One global cut-off instead of the tuned ones."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file that labelwise did not write."),
    engine: str = typer.Option("torch", "--engine", help=ENGINE_HELP),
    tta: bool = typer.Option(False, "--tta", help=TTA_HELP),
    tta_views: Optional[int] = typer.Option(None, "--tta-views", metavar="N", help=TTA_VIEWS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    explain: Optional[Path] = typer.Option(None, "--explain", metavar="DIR",
                                           help="Also write class-activation maps (Grad-CAM): one overlay PNG per "
                                                "image and predicted label in DIR, listed in DIR/explanations.csv."),
) -> None:
    """Predict labels for images; writes one CSV row (or JSON line) per image: labels and a probability per label."""
    from labelwise.errors import check_choice
    from labelwise.outputs import check_output_file

    out_format = check_choice("--format", out_format, ("auto", "csv", "jsonl"))
    if out_format == "auto":
        out_format = "jsonl" if out_file.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    check_output_file(out_file, "csv" if out_format == "csv" else "json", overwrite)  # before the model loads
    from labelwise.infer.predict import Predictor, list_images

    predictor = Predictor.load(run, threshold=threshold, engine=engine, tta=tta_option(tta, tta_views), notify=_note)
    paths = list_images(inputs)
    if not paths:
        raise LabelwiseError(f"no images found in {', '.join(map(str, inputs))}")
    names = list(predictor.labels.names)
    import csv
    import json

    from labelwise.io import atomic_text_stream

    n_rows = errors = 0
    with atomic_text_stream(out_file) as f:  # rows are written as they stream in: memory stays flat
        writer = csv.writer(f, lineterminator="\n")
        if out_format == "csv":
            writer.writerow(["image", "labels", *names, "error"])
        for r in predictor.iter_predict(paths, progress=not quiet):
            if out_format == "jsonl":
                f.write(json.dumps({"image": r.path, "labels": r.labels,
                                    "probabilities": {n: round(r.probs[n], 6) for n in names} if r.probs else None,
                                    "error": r.error or None}) + "\n")
            else:
                writer.writerow([r.path, " ".join(r.labels),
                                 *(f"{r.probs[n]:.6f}" if r.probs else "" for n in names), r.error])
            n_rows += 1
            errors += bool(r.error)
    out.print(f"predicted {n_rows - errors} images" + (f", {errors} unreadable (see the error column)" if errors else "")
              + f" -> [bold]{out_file}[/]")
    if explain is not None:
        from labelwise.infer.explain import explain_images

        maps = [e for e in explain_images(run, paths, explain, threshold=threshold) if e.file]
        out.print(f"explained {len(maps)} (image, label) pairs -> [bold]{explain}[/]")


