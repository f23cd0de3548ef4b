"""The `labelwise` command: parse options -> config -> one library call -> print a summary.

User mistakes (LabelwiseError) print one red line naming the file/option and exit with code 2.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from labelwise.data.transforms import AUGMENT_PRESETS
from labelwise.errors import LabelwiseError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and use image classifiers (multi-label first-class).")
console = Console(stderr=True)
out = Console()

DATA_HELP = "A folder (class subfolders; labels.csv + images/; annotations/ + images/) or a CSV file."
FORMAT_HELP = "Data format: auto, folder, csv-tags, csv-onehot, annotations."
ENGINE_HELP = "torch (PyTorch) or onnx (onnxruntime; exports RUN/model.onnx once, kept in step with the weights)."


@app.command()
def train(
    data: Path = typer.Argument(..., help=DATA_HELP),
    out_dir: Path = typer.Option(Path("runs/run"), "--out", help="Run directory to write (the model bundle)."),
    model: str = typer.Option("auto", "--model", help="Backbone: see `labelwise models`, or a timm name; auto = "
                              "cnn-small for tiny images (<= 48 px), else efficientnet_lite0."),
    strategy: str = typer.Option("finetune", "--strategy", help="finetune (train everything), linear-probe (embed "
                                 "once with the frozen pretrained backbone, train the head: seconds), auto "
                                 "(picks from the data size and --time-limit, and says why)."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained", help="Start from ImageNet "
                                              "weights (default: when they ship offline, as for efficientnet_lite0)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local .safetensors weights for the backbone."),
    fusion: str = typer.Option("early", "--fusion", help="N-band images: early (adapted first conv) or late "
                               "(RGB backbone + small CNN on the extra bands, features joined)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Default 10; with --time-limit, as many as fit "
                                         "in it (at most 100)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW, warm-up then cosine)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Square input side in px (default: from the images)."),
    val_split: float = typer.Option(0.2, "--val-split", help="Share of images held out for validation."),
    seed: int = typer.Option(0, "--seed"),
    folds: int = typer.Option(1, "--folds", help="K-fold cross-validation: K models, out-of-fold predictions, "
                              "and their ensemble as the bundle."),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN/checkpoints/last.ckpt."),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder the CSV's image names are relative to."),
    delimiter: str = typer.Option("auto", "--delimiter", help="Separator between tags in a csv-tags cell; auto = whitespace, commas, semicolons or |."),
    strict: bool = typer.Option(False, "--strict", help="Unreadable images are an error instead of skipped."),
    cache: str = typer.Option("auto", "--cache", help="Decoded-image cache, reused across runs: auto "
                              "($LABELWISE_CACHE_DIR or ~/.cache/labelwise), off, or a folder."),
    loss: str = typer.Option("auto", "--loss", help="bce, focal, asl, soft-f1 (multi-label); ce (multi-class)."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help="Default: 0.1 for "
                                                     "multi-class cross-entropy, 0 for multi-label."),
    class_weights: str = typer.Option("none", "--class-weights", help="auto: weight rare labels up; none."),
    sampler: str = typer.Option("none", "--sampler", help="balanced: over-sample images carrying rare labels."),
    max_empty_fraction: Optional[float] = typer.Option(None, "--max-empty-fraction",
                                                       help="Multi-label: at most this share of drawn images has no label."),
    monitor: Optional[str] = typer.Option(None, "--monitor", help="Metric that picks the best epoch (default map / accuracy)."),
    augment: str = typer.Option("default", "--augment", help="Presets: " + "; ".join(
        f"{k}: {v}" for k, v in AUGMENT_PRESETS.items())),
    vflip: bool = typer.Option(False, "--vflip", help="Vertical flips too (satellite, microscopy, plants)."),
    mixup: float = typer.Option(0.0, "--mixup", help="MixUp with Beta(A, A), e.g. 0.2; 0 = off."),
    cutmix: float = typer.Option(0.0, "--cutmix", help="CutMix with Beta(A, A), e.g. 1.0; 0 = off."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw, adam, sgd, rmsprop, adadelta."),
    momentum: float = typer.Option(0.9, "--momentum", help="sgd / rmsprop momentum (sgd uses Nesterov)."),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    scheduler: str = typer.Option("cosine", "--scheduler", help="cosine, onecycle, step, plateau, constant."),
    step_size: int = typer.Option(10, "--step-size", help="step: epochs between decays; plateau: patience."),
    gamma: float = typer.Option(0.1, "--gamma", help="LR decay factor for step / plateau."),
    warmup_epochs: float = typer.Option(0.5, "--warmup-epochs"),
    freeze_epochs: int = typer.Option(0, "--freeze-epochs", help="Train the head alone for N epochs, then all."),
    backbone_lr_mult: float = typer.Option(0.1, "--backbone-lr-mult",
                                           help="Backbone LR = --lr x this after unfreezing (with --freeze-epochs)."),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Clip the gradient norm to this."),
    early_stopping: Optional[int] = typer.Option(None, "--early-stopping", help="Stop after N epochs without improvement."),
    threshold_objective: str = typer.Option("f1", "--threshold-objective", help="f1, precision@P or recall@R."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One global cut-off instead of tuned ones."),
    at_least_one: bool = typer.Option(False, "--at-least-one", help="Multi-label: always predict the top label."),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", help="Stop after this long, e.g. 90s, 10m, 1h."),
    devices: str = typer.Option("auto", "--devices", help="Devices (processes) per node, e.g. 2."),
    distributed: str = typer.Option("auto", "--distributed", help="Lightning strategy, e.g. ddp (several devices or nodes)."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Machines taking part (with --distributed ddp)."),
    accelerator: str = typer.Option("auto", "--accelerator", help="auto, cpu, gpu"),
    precision: str = typer.Option("auto", "--precision", help="auto (mixed precision where measured to be "
                                  "faster: GPUs, and cnn-small on AMX CPUs), 32, bf16-mixed, 16-mixed."),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="CSV column, or regex on image paths (first "
                                           "capture group = key): images of one group never cross a split."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write RUN/report.html after training."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train a classifier on DATA and write a run directory (bundle, metrics, history, predictions)."""
    from labelwise.config import make_config
    from labelwise.training.run import train as run_train

    cfg = make_config(
        data, out_dir, format=fmt, images=str(images) if images else None, delimiter=delimiter, val_split=val_split,
        image_size=image_size, strict=strict, backbone=model, pretrained=pretrained,
        weights=str(weights) if weights else None, fusion=fusion, epochs=epochs, batch_size=batch_size, lr=lr, loss=loss,
        label_smoothing=label_smoothing, class_weights=class_weights, sampler=sampler,
        max_empty_fraction=max_empty_fraction, monitor=monitor, augment=augment,
        vflip=vflip, mixup=mixup, cutmix=cutmix, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
        scheduler=scheduler, step_size=step_size, gamma=gamma, warmup_epochs=warmup_epochs,
        freeze_epochs=freeze_epochs, backbone_lr_mult=backbone_lr_mult, grad_clip=grad_clip,
        early_stopping=early_stopping,
        threshold_objective=threshold_objective, threshold=threshold, at_least_one=at_least_one, seed=seed,
        devices=int(devices) if devices.isdigit() else devices, accelerator=accelerator, precision=precision,
        strategy=strategy, distributed=distributed, num_nodes=num_nodes, folds=folds, group_by=group_by, cache=cache,
        time_limit_s=parse_duration(time_limit) if time_limit else None)
    result = run_train(cfg, resume=resume, progress=not quiet, on_skipped=_print_skipped, on_warning=_print_warning,
                       on_note=_print_note)
    if result is None:  # a non-zero rank of a distributed run: rank 0 reports
        return
    m = result.metrics
    if m["run"].get("strategy") == "linear-probe":
        console.print(f"[bold]trained[/] a linear probe on {m['run']['backbone']} features in "
                      f"{m['run']['wall_time_s']:.1f} s (embedding included) on {m['run']['train_images']} images; "
                      f"validated on {m['run']['val_images']}")
    else:
        console.print(f"[bold]trained[/] {result.epochs_run} epochs, {result.epoch_time_s:.1f} s/epoch "
                      f"(validation included) on {m['run']['train_images']} images; validated on "
                      f"{m['run']['val_images']}")
    print_scores(m)
    if report:
        from labelwise.report import build_report

        out.print(f"report: [bold]{build_report(result.run_dir)}[/]")
    out.print(f"run directory: [bold]{result.run_dir}[/]")


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    data: Path = typer.Argument(..., help=DATA_HELP),
    fmt: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    images: Optional[Path] = typer.Option(None, "--images"),
    delimiter: str = typer.Option("auto", "--delimiter", help="Separator between tags in a csv-tags cell; auto = whitespace, commas, semicolons or |."),
    strict: bool = typer.Option(False, "--strict"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One global cut-off instead of the tuned ones."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Metrics JSON to write (default RUN/evaluation.json)."),
    engine: str = typer.Option("torch", "--engine", help=ENGINE_HELP),
    tta: bool = typer.Option(False, "--tta", help="Average predictions over flipped copies (test-time augmentation)."),
) -> None:
    """Score a trained model on a labelled dataset, next to trivial baselines."""
    from labelwise.infer.evaluate_bundle import evaluate as run_evaluate

    result = run_evaluate(run, data, fmt=fmt, images=images, delimiter=delimiter, strict=strict,
                          threshold=threshold, out=out_file, engine=engine, tta=tta)
    _print_skipped([(Path(s["path"]), s["reason"]) for s in result["skipped_images"]])
    print_scores(result)
    out.print(f"metrics written to [bold]{result['written_to']}[/]")


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run directory written by `labelwise train`."),
    inputs: List[Path] = typer.Argument(..., help="Image files and/or folders (searched recursively)."),
    out_file: Path = typer.Option(Path("predictions.csv"), "--out", help="CSV to write."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One global cut-off instead of the tuned ones."),
    engine: str = typer.Option("torch", "--engine", help=ENGINE_HELP),
    tta: bool = typer.Option(False, "--tta", help="Average predictions over flipped copies (test-time augmentation)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Predict labels for images; writes one CSV row per image (labels, one probability column per label)."""
    from labelwise.infer.predict import Predictor, list_images
    from labelwise.io import write_csv

    predictor = Predictor.load(run, threshold=threshold, engine=engine, tta=tta, notify=_note)
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


@app.command()
def ensemble(
    runs: List[Path] = typer.Argument(..., help="Two or more run directories (same labels and input size)."),
    out_dir: Path = typer.Option(..., "--out", help="Run directory to write the ensemble bundle to."),
    threshold_objective: str = typer.Option("f1", "--threshold-objective", help="f1, precision@P or recall@R."),
) -> None:
    """Average several runs' probabilities into one bundle; thresholds re-tuned on shared out-of-sample images."""
    from labelwise.infer.ensemble import build_ensemble

    result = build_ensemble(runs, out_dir, threshold_objective)
    if "model" in result:
        print_scores(result)
    for note in result.get("notes", []):
        console.print(f"[dim]note: {note}[/]")
    out.print(f"ensemble of {len(runs)} runs written to [bold]{out_dir}[/]")


@app.command()
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


@app.command("models")
def models_cmd() -> None:
    """List the registered backbones (any timm model name works too)."""
    from labelwise.models.backbones import get_spec, list_backbones

    for name in list_backbones():
        spec = get_spec(name)
        out.print(f"[bold]{name}[/]  pretrained: {spec.pretrained}  {spec.description}")


@app.command()
def cache(
    action: str = typer.Argument("info", help="info (where the decoded-image cache is, how big) or clear."),
    directory: Optional[Path] = typer.Option(None, "--dir", help="Cache folder (default: $LABELWISE_CACHE_DIR "
                                             "or ~/.cache/labelwise, as train uses)."),
) -> None:
    """Show or clear the decoded-image cache that train, evaluate and predict reuse across runs."""
    from labelwise.data.cache import cache_info, clear_cache, default_cache_dir
    from labelwise.errors import check_choice

    check_choice("cache action", action, ("info", "clear"))
    root = directory or default_cache_dir()
    if action == "clear":
        freed = clear_cache(root)
        out.print(f"cleared {root}: {freed / 2**20:.1f} MiB freed")
        return
    info = cache_info(root)
    out.print(f"decoded-image cache at [bold]{root}[/]: {info['bytes'] / 2**20:.1f} MiB, {info['images']} images")
    for name, size in info["sizes"].items():
        count = "unreadable index" if size["images"] is None else f"{size['images']} images"
        out.print(f"  {name}: {count}, {size['bytes'] / 2**20:.1f} MiB")


def _register_commands() -> None:
    """Commands that live in their own modules (each imports its heavy dependencies lazily)."""
    from labelwise.cli.export import export_command
    from labelwise.cli.lr_find import lr_find_command
    from labelwise.cli.report import report_command
    from labelwise.cli.serve import serve_command

    app.command("report")(report_command)
    app.command("serve")(serve_command)
    app.command("lr-find")(lr_find_command)
    app.command("export")(export_command)


_register_commands()


def parse_duration(text: str) -> float:
    """'90', '90s', '10m', '1.5h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise LabelwiseError(f"--time-limit {text!r}: use a number of seconds or e.g. 90s, 10m, 1h") from None
    if value <= 0:
        raise LabelwiseError(f"--time-limit {text!r} must be positive")
    return value


def print_scores(m: dict) -> None:
    """Model vs baselines on the key metrics, then warnings."""
    from rich.table import Table

    multilabel = m["task"] == "multilabel"
    keys = {"map": "mAP", "f1_macro": "F1 macro", "f1_micro": "F1 micro", "exact_match": "exact",
            "hamming_accuracy": "hamming"} if multilabel else \
        {"accuracy": "accuracy", "balanced_accuracy": "balanced acc", "f1_macro": "F1 macro"}
    table = Table(title=f"{m['task']} scores on {m['n_images']} images (monitored: {m['monitor']})")
    table.add_column("predictor")
    for title in keys.values():
        table.add_column(title, justify="right")
    rows = [("model" + (" (tuned cut-offs)" if multilabel else ""), m["model"])]
    if multilabel:
        rows.append(("model at 0.5", m["model_at_0.5"]))
    rows += [(f"baseline: {name.replace('_', ' ')}", b) for name, b in m["baselines"].items()]
    for name, vals in rows:
        table.add_row(name, *(_fmt(vals.get(k)) for k in keys))
    out.print(table)
    for w in m.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {w}")
    for note in m.get("notes", []):
        console.print(f"[dim]note: {note}[/]")


def _fmt(v) -> str:
    return "-" if v is None or v != v else f"{v:.3f}"


def _note(message: str) -> None:
    console.print(f"[dim]{message}[/]")


def _print_warning(line: str) -> None:
    console.print(f"[bold yellow]warning:[/] {line}")


def _print_note(line: str) -> None:
    console.print(f"[cyan]chose:[/] {line}")


def _print_skipped(skipped) -> None:
    if not skipped:
        return
    console.print(f"[yellow]skipped {len(skipped)} unreadable image(s):[/]")
    for path, reason in skipped[:20]:
        console.print(f"  {reason}" if str(path) in reason else f"  {path}: {reason}")
    if len(skipped) > 20:
        console.print(f"  ... and {len(skipped) - 20} more")


def main() -> None:
    try:
        app()
    except LabelwiseError as e:
        console.print(f"[bold red]error:[/] {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
