"""labelwise train"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelwise.cli.console import (
    _print_note,
    _print_skipped,
    _print_warning,
    console,
    out,
)
from labelwise.cli.help import DATA_HELP, FORMAT_HELP
from labelwise.cli.scores import print_scores
from labelwise.data.transforms import AUGMENT_PRESETS
from labelwise.errors import LabelwiseError


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


