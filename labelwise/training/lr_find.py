"""Learning-rate range test (Smith 2015; fastai's ``lr_find``): `labelwise lr-find DATA`.

A throwaway copy of the model trains for up to ``num_steps`` batches while the learning rate grows
exponentially from ``start_lr`` to ``end_lr``; the loss is smoothed (EMA 0.98, bias-corrected) and
the test stops once it exceeds 4x its best value. The suggestion is the learning rate where the
smoothed loss falls fastest (the steepest negative slope against log lr, before the minimum);
when the curve never falls, it is the learning rate of the lowest loss divided by 10. The result
says which rule gave it.

It uses the same pieces as training (``prepare``: options, data, input choice, decoding; the
split, sampler, augmentation and MixUp/CutMix, loss, and ``build_optimizer``'s optimizer and
parameter groups), so the suggestion applies to ``labelwise train --lr`` with the same options:
there it is the *peak* learning rate after warm-up. With ``--freeze-epochs`` the backbone is
frozen during the sweep, as in the first phase of training.

>>> result = lr_find(make_config("data/", "runs/lr", backbone="cnn-small", pretrained=False))  # doctest: +SKIP
>>> result.suggestion, result.method, result.plot_path                                       # doctest: +SKIP
(0.0145, 'steepest', PosixPath('runs/lr/lr_find.png'))
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from labelwise.config import RunConfig
from labelwise.data.loaders import ArrayDataset, make_train_loader, sampling_weights
from labelwise.data.splits import train_val_split
from labelwise.data.transforms import AugmentConfig, augment_batch, mix_batch
from labelwise.errors import ConfigError, DataError
from labelwise.io import write_csv
from labelwise.models.classifier import Classifier
from labelwise.models.freeze import freeze_for_epoch
from labelwise.training.loss_modules import class_weights
from labelwise.training.losses import build_loss
from labelwise.training.optim import build_optimizer
from labelwise.training.prepare import init_head_bias, prepare, use_pretrained

if TYPE_CHECKING:
    import torch

BETA = 0.98  # EMA factor for the smoothed loss
DIVERGE = 4.0  # stop once the smoothed loss exceeds this multiple of its best value


@dataclass(frozen=True)
class LrFindResult:
    lrs: np.ndarray  # learning rate of each step taken, increasing
    losses: np.ndarray  # smoothed loss after each step (EMA 0.98, bias-corrected)
    raw_losses: np.ndarray  # the batch loss of each step
    suggestion: float  # learning rate to use as --lr
    method: str  # "steepest" (fastest fall of the smoothed loss) or "min/10" (lowest loss / 10)
    min_loss_lr: float  # learning rate at the lowest smoothed loss
    stopped_early: bool  # True when the loss diverged before num_steps
    plot_path: Path | None  # PNG: loss against lr (log scale), suggestion marked
    csv_path: Path | None  # lr, loss, smoothed_loss per step


def lr_find(cfg: RunConfig, start_lr: float = 1e-7, end_lr: float = 1.0, num_steps: int = 100,
            write: bool = True) -> LrFindResult:
    """Run the range test on the training part of cfg's data; write lr_find.png/.csv to cfg.out."""
    import dataclasses

    import torch  # here, not at the top: the CLI imports this module for --help


    if not (0 < start_lr < end_lr and math.isfinite(end_lr)):
        raise ConfigError(f"--start-lr ({start_lr}) must be positive and below --end-lr ({end_lr})")
    if num_steps < 5:
        raise ConfigError(f"--steps must be at least 5, got {num_steps}")
    prep = prepare(cfg)  # validates the options, loads, chooses the input and decodes, as training does
    labels, tcfg, mcfg = prep.labels, prep.cfg.train, prep.cfg.model
    train_idx, _ = train_val_split(prep.samples, prep.cfg.data.val_split, tcfg.seed)  # what training sees
    y = prep.samples.targets[train_idx]

    torch.manual_seed(tcfg.seed)
    device = _device(tcfg.accelerator)
    model = Classifier(mcfg.backbone, len(labels), in_chans=prep.cfg.data.channels, pretrained=use_pretrained(mcfg),
                       weights=mcfg.weights, drop_rate=mcfg.drop_rate, fusion=mcfg.fusion)
    init_head_bias(model, y, labels)
    model = model.to(device=device, memory_format=torch.channels_last).train()
    # what training's first epoch trains (under --freeze-epochs the head alone, as fastai's lr_find before fine_tune)
    freeze_for_epoch(model.backbone, 0, tcfg.freeze_epochs, tcfg.frozen_stages)
    weights = class_weights(y, labels.task) if tcfg.class_weights == "auto" else None
    loss_fn = build_loss(prep.loss_name, labels.task, label_smoothing=tcfg.label_smoothing,
                         pos_weight=weights if labels.multilabel else None,
                         class_weight=None if labels.multilabel else weights).to(device)
    # Training's optimizer and parameter groups; lr=1 and a constant schedule leave each group's lr
    # at its multiplier (e.g. backbone_lr_mult), which the sweep then scales.
    unit = dataclasses.replace(tcfg, lr=1.0, scheduler="constant", warmup_epochs=0.0)
    optimizer = build_optimizer(model, unit, 1, prep.monitor)["optimizer"]
    multipliers = [group["lr"] for group in optimizer.param_groups]

    drop_last = len(y) > tcfg.batch_size and len(y) % tcfg.batch_size in range(1, 4)  # as training
    loader = make_train_loader(ArrayDataset(prep.pixels[train_idx], y), tcfg.batch_size, seed=tcfg.seed,
                               drop_last=drop_last,
                               weights=sampling_weights(y, labels.multilabel, tcfg.sampler == "balanced",
                                                        tcfg.max_empty_fraction if labels.multilabel else None))
    aug_gen = torch.Generator().manual_seed(tcfg.seed)
    mixing = AugmentConfig(tcfg.augment, tcfg.vflip, tcfg.mixup, tcfg.cutmix)
    ratio = end_lr / start_lr

    lrs: list[float] = []
    raw: list[float] = []
    smooth: list[float] = []
    avg, best, stopped = 0.0, math.inf, False
    batches = _cycle(loader)
    for step in range(num_steps):
        lr = start_lr * ratio ** (step / (num_steps - 1))  # exponential: equal steps on a log axis
        for group, mult in zip(optimizer.param_groups, multipliers):
            group["lr"] = lr * mult
        x, target, _ = next(batches)
        x = augment_batch(x.to(device).float().div_(255.0), tcfg.augment, aug_gen, vflip=tcfg.vflip)
        x, target = mix_batch(x, target.to(device), mixing, aug_gen)
        loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), target)
        value = float(loss.detach())
        if not math.isfinite(value):
            stopped = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        avg = BETA * avg + (1 - BETA) * value
        smoothed = avg / (1 - BETA ** (step + 1))
        lrs.append(lr)
        raw.append(value)
        smooth.append(smoothed)
        best = min(best, smoothed)
        if step > 0 and smoothed > DIVERGE * best:
            stopped = True
            break
    if len(lrs) < 2:
        raise DataError(f"the loss was not finite from the first steps (lr {start_lr:g}); lower --start-lr "
                        "or check the data")

    lrs_a, smooth_a = np.array(lrs), np.array(smooth)
    suggestion, method, min_lr = suggest(lrs_a, smooth_a)
    plot_path = csv_path = None
    if write:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        plot_path = _plot(out / "lr_find.png", lrs_a, smooth_a, suggestion, method, min_lr)

        csv_path = out / "lr_find.csv"
        write_csv(csv_path, ["lr", "loss", "smoothed_loss"],
                  [[f"{a:.6g}", f"{b:.6g}", f"{c:.6g}"] for a, b, c in zip(lrs, raw, smooth)])
    return LrFindResult(lrs_a, smooth_a, np.array(raw), suggestion, method, min_lr, stopped, plot_path, csv_path)


def suggest(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, str, float]:
    """(suggested lr, "steepest" or "min/10", lr at the lowest loss) from a smoothed loss curve.

    Steepest: the most negative d(loss)/d(log lr) up to the lowest loss; the rise after the minimum
    is divergence, not learning. When the loss never falls before its minimum: lowest-loss lr / 10.
    """
    lowest = int(np.argmin(losses))
    min_lr = float(lrs[lowest])
    if lowest >= 2:
        slope = np.gradient(losses[:lowest + 1], np.log10(lrs[:lowest + 1]))
        k = int(np.argmin(slope))
        if slope[k] < 0:
            return float(lrs[k]), "steepest", min_lr
    return max(float(lrs[0]), min_lr / 10), "min/10", min_lr


def _device(accelerator: str) -> torch.device:
    import torch

    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _cycle(loader):
    while True:  # a small set may need several passes for num_steps batches
        yield from loader


def _plot(path: Path, lrs: np.ndarray, losses: np.ndarray, suggestion: float, method: str,
          min_lr: float) -> Path:
    from matplotlib.figure import (
        Figure,  # object API: no pyplot, no global backend switch
    )

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(lrs, losses, color="#1f77b4", label="smoothed training loss")
    ax.set_xscale("log")
    ax.axvline(suggestion, color="#d62728", linestyle="--",
               label=f"suggestion {suggestion:.2g} ({'steepest fall' if method == 'steepest' else 'lowest loss / 10'})")
    ax.plot([suggestion], [np.interp(np.log10(suggestion), np.log10(lrs), losses)], "o", color="#d62728")
    ax.axvline(min_lr, color="#7f7f7f", linestyle=":", label=f"lowest loss at {min_lr:.2g}")
    lo, hi = float(losses.min()), float(losses[: int(np.argmin(losses)) + 1].max())
    ax.set_ylim(lo - 0.05 * (hi - lo + 1e-12), max(hi, lo) + 0.15 * (hi - lo + 1e-12))  # the divergence tail off-scale
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss")
    ax.set_title("learning-rate range test")
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path, dpi=100, format="png", facecolor="white")
    return path


