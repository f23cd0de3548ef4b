"""labelwise lr-find"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def lr_find_command(
    data: Path = typer.Argument(..., help="A folder (class subfolders; labels.csv + images/; annotations/ + "
                                          "images/) or a CSV file."),
    out_dir: Path = typer.Option(Path("runs/lr-find"), "--out", help="Folder for lr_find.png and lr_find.csv."),
    model: str = typer.Option("auto", "--model", help="Backbone, as in train (auto: by image size)."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained",
                                              help="Start from ImageNet weights (default: when they ship offline)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local .safetensors weights for the backbone."),
    batch_size: int = typer.Option(64, "--batch-size"),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Square input side in px (default: from the images)."),
    val_split: float = typer.Option(0.2, "--val-split", help="Share held out (not used by the test), as in train."),
    seed: int = typer.Option(0, "--seed"),
    fmt: str = typer.Option("auto", "--format", help="Data format: auto, folder, csv-tags, csv-onehot, annotations."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder the CSV's image names are relative to."),
    delimiter: str = typer.Option("auto", "--delimiter", help="Separator between tags in a csv-tags cell; auto = whitespace, commas, semicolons or |."),
    strict: bool = typer.Option(False, "--strict", help="Unreadable images are an error instead of skipped."),
    loss: str = typer.Option("auto", "--loss", help="bce, focal, asl, soft-f1 (multi-label); ce (multi-class)."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help="Default: 0.1 for "
                                                     "multi-class cross-entropy, 0 for multi-label."),
    class_weights: str = typer.Option("none", "--class-weights", help="auto: weight rare labels up; none."),
    sampler: str = typer.Option("none", "--sampler", help="balanced: over-sample images carrying rare labels."),
    augment: str = typer.Option("default", "--augment", help="Augmentation preset, as in train."),
    vflip: bool = typer.Option(False, "--vflip", help="Vertical flips too, as in train."),
    mixup: float = typer.Option(0.0, "--mixup", help="MixUp Beta(a, a), as in train; 0 = off."),
    cutmix: float = typer.Option(0.0, "--cutmix", help="CutMix Beta(a, a), as in train; 0 = off."),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw | adam | sgd | rmsprop | adadelta, as in train."),
    momentum: float = typer.Option(0.9, "--momentum", help="sgd / rmsprop momentum."),
    weight_decay: float = typer.Option(0.01, "--weight-decay"),
    freeze_epochs: int = typer.Option(0, "--freeze-epochs", help="> 0: sweep with the backbone frozen (the "
                                                                  "first phase of training)."),
    backbone_lr_mult: float = typer.Option(0.1, "--backbone-lr-mult", help="Backbone LR relative to --lr, as in train."),
    start_lr: float = typer.Option(1e-7, "--start-lr", help="First learning rate of the sweep."),
    end_lr: float = typer.Option(1.0, "--end-lr", help="Last learning rate of the sweep."),
    steps: int = typer.Option(100, "--steps", help="Batches in the sweep (the data is cycled when smaller)."),
    accelerator: str = typer.Option("auto", "--accelerator", help="auto, cpu, gpu"),
) -> None:
    """Learning-rate range test: sweep the LR up exponentially over a few batches, plot the loss, suggest --lr."""
    from rich.console import Console

    from labelwise.config import make_config
    from labelwise.training.lr_find import lr_find

    cfg = make_config(data, out_dir, format=fmt, images=str(images) if images else None, delimiter=delimiter,
                      val_split=val_split, image_size=image_size, strict=strict, backbone=model,
                      pretrained=pretrained, weights=str(weights) if weights else None, batch_size=batch_size,
                      loss=loss, label_smoothing=label_smoothing, class_weights=class_weights, sampler=sampler,
                      augment=augment, vflip=vflip, mixup=mixup, cutmix=cutmix, optimizer=optimizer,
                      momentum=momentum, weight_decay=weight_decay, freeze_epochs=freeze_epochs,
                      backbone_lr_mult=backbone_lr_mult, seed=seed, accelerator=accelerator)
    result = lr_find(cfg, start_lr=start_lr, end_lr=end_lr, num_steps=steps)
    how = "where the loss falls fastest" if result.method == "steepest" else "the lowest loss / 10"
    console = Console()
    console.print(f"suggested learning rate: [bold]{result.suggestion:.2g}[/] ({how}; lowest loss at "
                  f"{result.min_loss_lr:.2g}, {len(result.lrs)} steps"
                  + (", stopped when the loss diverged" if result.stopped_early else "") + ")")
    console.print(f"use it as the peak rate: labelwise train {data} --lr {result.suggestion:.2g} ...")
    console.print(f"plot: [bold]{result.plot_path}[/]  data: {result.csv_path}")


