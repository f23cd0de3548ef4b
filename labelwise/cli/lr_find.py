"""labelwise lr-find: the learning-rate range test, with train's data/model/recipe options (from the schema)."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from labelwise.cli.help import DATA_HELP
from labelwise.cli.options import schema_command

# train's options that shape the loss curve; epochs, schedules and evaluation options do not apply to a sweep
LR_FIND_OPTIONS = ("format", "images", "delimiter", "val_split", "image_size", "channels", "strict", "cache",
                   "group_by", "backbone", "pretrained", "weights", "drop_rate", "fusion", "batch_size", "loss",
                   "label_smoothing", "class_weights", "sampler", "max_empty_fraction", "augment", "vflip", "mixup",
                   "cutmix", "optimizer", "momentum", "nesterov", "weight_decay", "freeze_epochs", "backbone_lr_mult",
                   "seed", "accelerator")


def _lr_find(data: Path, out_dir: Path, config: Optional[Path], start_lr: float, end_lr: float, steps: int,
             **options: Any) -> None:
    """Learning-rate range test: sweep the LR up exponentially over a few batches, plot the loss, suggest --lr."""
    from rich.console import Console

    from labelwise.cli.train import resolve_cli_config
    from labelwise.training.lr_find import lr_find

    cfg = resolve_cli_config(data, out_dir, config, options)
    result = lr_find(cfg, start_lr=start_lr, end_lr=end_lr, num_steps=steps)
    how = "where the loss falls fastest" if result.method == "steepest" else "the lowest loss / 10"
    console = Console()
    console.print(f"suggested learning rate: [bold]{result.suggestion:.2g}[/] ({how}; lowest loss at "
                  f"{result.min_loss_lr:.2g}, {len(result.lrs)} steps"
                  + (", stopped when the loss diverged" if result.stopped_early else "") + ")")
    console.print(f"use it as the peak rate: labelwise train {data} --lr {result.suggestion:.2g} ...")
    console.print(f"plot: [bold]{result.plot_path}[/]  data: {result.csv_path}")


def _param(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


LR_FIND_PARAMS = [
    _param("data", typer.Argument(..., help=DATA_HELP), Path),
    _param("out_dir", typer.Option(Path("runs/lr-find"), "--out", help="Folder for lr_find.png and lr_find.csv."),
           Path),
    _param("config", typer.Option(None, "--config", help="A run's config.yaml (or one in its shape) to take the "
                                  "options from; flags override it."), Optional[Path]),
    _param("start_lr", typer.Option(1e-7, "--start-lr", help="First learning rate of the sweep."), float),
    _param("end_lr", typer.Option(1.0, "--end-lr", help="Last learning rate of the sweep."), float),
    _param("steps", typer.Option(100, "--steps", help="Batches in the sweep (the data is cycled when smaller)."), int),
]
lr_find_command = schema_command(_lr_find, LR_FIND_PARAMS, include=LR_FIND_OPTIONS)
