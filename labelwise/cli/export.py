"""labelwise export"""
from __future__ import annotations

from pathlib import Path

import typer


def export_command(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    fmt: str = typer.Option("onnx", "--format", help="onnx (fast CPU inference with onnxruntime) or torchscript."),
    out_file: Path | None = typer.Option(None, "--out",
                                            help="File to write (default RUN/model.onnx or RUN/model.torchscript.pt)."),
) -> None:
    """Export a trained model to ONNX or TorchScript; the export is checked against PyTorch before it is written."""
    from rich.console import Console
    from rich.markup import escape

    from labelwise.infer.engines import ONNX_INPUT
    from labelwise.infer.export import export_model
    from labelwise.models.bundle import read_meta

    meta = read_meta(run)
    result = export_model(run, fmt, out_file)
    c, s, n = meta.in_chans, meta.image_size, len(meta.labels)
    rule = "sigmoid per label; label j when probs[:, j] >= thresholds[j]" if meta.labels.multilabel else \
        "softmax; the label is the argmax"
    where = "the file's metadata_props (labelwise.*)" if result.format == "onnx" else \
        "the archive's extra file labelwise.json"
    Console(soft_wrap=True).print(
        f"exported [bold]{escape(str(result.path))}[/] ({result.format}, {result.size_bytes / 1e6:.1f} MB, {result.seconds:.0f} s); "
        f"matches PyTorch within {result.max_prob_diff:.1e} in probability on a random batch\n"
        f"  input   {ONNX_INPUT}: float32 (batch, {c}, {s}, {s}), pixel values / 255 (the model normalises itself)\n"
        f"  outputs logits, probs: float32 (batch, {n}); probs = {escape(rule)}\n"
        f"  labels, thresholds and input spec: {where}")


