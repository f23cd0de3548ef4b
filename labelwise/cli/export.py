"""labelwise export"""
from __future__ import annotations

from pathlib import Path

import typer


def export_command(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    fmt: str = typer.Option("onnx", "--format",
                            help="onnx (fast CPU inference with onnxruntime), torchscript, or timm (a folder in "
                                 "timm's Hugging Face Hub layout: timm.create_model('local-dir:FOLDER'))."),
    out_file: Path | None = typer.Option(None, "--out",
                                         help="File (folder for timm) to write (default RUN/model.onnx, "
                                              "RUN/model.torchscript.pt or RUN/hub/)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file that labelwise did not "
                                   "write."),
) -> None:
    """Export a trained model to ONNX, TorchScript or timm; the export is checked against PyTorch before it is written."""
    from rich.markup import escape

    from labelwise.cli.console import console, out
    from labelwise.infer.engines import ONNX_INPUT
    from labelwise.infer.export import EXPORT_FORMATS, export_model
    from labelwise.models.bundle import read_meta

    EXPORT_FORMATS.check(fmt)
    if out_file is not None and fmt in ("onnx", "torchscript") and not out_file.is_dir():  # a folder: default name inside
        from labelwise.outputs import check_output_file

        check_output_file(out_file, fmt, overwrite)
    meta = read_meta(run)
    with console.status(f"exporting {run} to {fmt} (tracing and checking against PyTorch) ..."):
        result = export_model(run, fmt, out_file)
    c, s, n = meta.in_chans, meta.image_size, len(meta.labels)
    rule = "sigmoid per label; label j when probs[:, j] >= thresholds[j]" if meta.labels.multilabel else \
        "softmax; the label is the argmax"
    if result.format == "timm":
        out.print(
            f"exported [bold]{escape(str(result.path))}[/] (timm, {result.size_bytes / 1e6:.1f} MB, "
            f"{result.seconds:.0f} s); timm's model gives labelwise's logits within {result.max_prob_diff:.1e}\n"
            f"  load    timm.create_model('local-dir:{escape(str(result.path))}', pretrained=True)\n"
            f"  input   timm.data.create_transform(**timm.data.resolve_data_config({{}}, model=model)) on a "
            f"{'gray (L)' if c == 1 else 'RGB'} PIL image: squash to {s}x{s}, normalise\n"
            f"  outputs logits (batch, {n}); probabilities = {escape(rule)}\n"
            f"  labels: config.json label_names; task, thresholds: config.json 'labelwise'")
        return
    where = "the file's metadata_props (labelwise.*)" if result.format == "onnx" else \
        "the archive's extra file labelwise.json"
    out.print(
        f"exported [bold]{escape(str(result.path))}[/] ({result.format}, {result.size_bytes / 1e6:.1f} MB, {result.seconds:.0f} s); "
        f"matches PyTorch within {result.max_prob_diff:.1e} in probability on a random batch\n"
        f"  input   {ONNX_INPUT}: float32 (batch, {c}, {s}, {s}), pixel values / 255 (the model normalises itself)\n"
        f"  outputs logits, probs: float32 (batch, {n}); probs = {escape(rule)}\n"
        f"  labels, thresholds and input spec: {where}")
