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
    out_file: Path = typer.Option(Path("predictions.csv"), "--out", help="CSV to write."),
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
    """Predict labels for images; writes one CSV row per image (labels, one probability column per label)."""
    from labelwise.infer.predict import Predictor, list_images
    from labelwise.io import write_csv

    predictor = Predictor.load(run, threshold=threshold, engine=engine, tta=tta_option(tta, tta_views), notify=_note)
    from labelwise.outputs import check_output_file

    check_output_file(out_file, "csv", overwrite)  # before the model loads
    paths = list_images(inputs)
    if not paths:
        raise LabelwiseError(f"no images found in {', '.join(map(str, inputs))}")
    rows = predictor.predict(paths, progress=not quiet)
    names = list(predictor.labels.names)
    write_csv(out_file, ["image", "labels", *names, "error"],
              [[r.path, " ".join(r.labels), *(f"{r.probs[n]:.6f}" if r.probs else "" for n in names), r.error]
               for r in rows])
    errors = sum(1 for r in rows if r.error)
    out.print(f"predicted {len(rows) - errors} images" + (f", {errors} unreadable (see the error column)" if errors else "")
              + f" -> [bold]{out_file}[/]")
    if explain is not None:
        from labelwise.infer.explain import explain_images

        maps = [e for e in explain_images(run, paths, explain, threshold=threshold) if e.file]
        out.print(f"explained {len(maps)} (image, label) pairs -> [bold]{explain}[/]")


