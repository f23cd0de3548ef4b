"""Resolve every option once: validate, load the data, choose backbone, input, strategy and precision, decode."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from labelwise.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from labelwise.data.band_scaling import PLAIN, PixelSpec, format_bands, parse_bands
from labelwise.data.band_stats import fit_pixel_spec
from labelwise.data.cache import resolve_cache_dir
from labelwise.data.decoded import decode_samples
from labelwise.data.duplicates import (
    describe_duplicates,
    fingerprint_pixels,
    fold_duplicates,
)
from labelwise.data.loaders import choose_input, median_side, probe_images
from labelwise.data.splits import auto_val_split
from labelwise.data.samples import Samples
from labelwise.data.sources import load_samples
from labelwise.errors import ConfigError, DataError
from labelwise.evaluation.metrics import check_monitor
from labelwise.labels import LabelSpace
from labelwise.models.backbones import get_spec
from labelwise.models.classifier import Classifier
from labelwise.training.auto import (
    choose_backbone,
    choose_strategy,
    estimate_epoch_s,
    min_input_side,
)
from labelwise.training.init_from import resolve_init_from
from labelwise.training.lightning import monitor_key
from labelwise.training.losses import resolve_loss
from labelwise.training.optim import resolve_recipe
from labelwise.training.options import check_options
from labelwise.training.precision import choose_precision

log = logging.getLogger("labelwise")
MIN_NATIVE_SIDE = 4  # px: smaller images (1x1, 2x2) hold a colour or two, not a picture
DEFAULT_LABEL_SMOOTHING = 0.1  # multi-class cross-entropy, when --label-smoothing is not given


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _check(cfg: RunConfig) -> None:
    check_options(cfg)  # every choice against its registry, with a did-you-mean
    t = cfg.train
    if t.epochs is not None and t.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {t.epochs}")
    if t.time_limit_s is not None and not t.time_limit_s > 0:
        raise ConfigError(f"--time-limit must be positive, got {t.time_limit_s} s")
    if t.frozen_stages is not None and t.frozen_stages < 0:
        raise ConfigError(f"--frozen-stages must be 0 or more, got {t.frozen_stages}")
    if t.batch_size is not None and t.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {t.batch_size}")
    if t.lr is not None and not t.lr >= 0:
        raise ConfigError(f"--lr must be >= 0, got {t.lr}")
    if cfg.data.val_split is not None and not 0.0 < cfg.data.val_split < 1.0:
        raise ConfigError(f"--val-split must be between 0 and 1 (exclusive), got {cfg.data.val_split}")
    if t.threshold is not None and not 0.0 < t.threshold < 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1, got {t.threshold}")
    epochs = t.max_epochs
    if t.freeze_epochs < 0 or t.freeze_epochs >= epochs and t.freeze_epochs > 0:
        raise ConfigError(f"--freeze-epochs {t.freeze_epochs} must be between 0 and --epochs - 1 ({epochs - 1})")
    if t.folds < 1:
        raise ConfigError(f"--folds must be 2 or more for cross-validation (1 = a single split), got {t.folds}")
    if t.mixup < 0 or t.cutmix < 0:
        raise ConfigError("--mixup and --cutmix take a Beta concentration >= 0 (0 = off), e.g. 0.2 or 1.0")
    if t.strategy == "linear-probe" and (t.distributed != "auto" or t.num_nodes > 1):
        raise ConfigError("--strategy linear-probe runs in one process (it embeds once and trains a head in "
                          "seconds); drop --distributed / --num-nodes, or use --strategy finetune")
    if t.max_empty_fraction is not None and not 0.0 <= t.max_empty_fraction < 1.0:
        raise ConfigError(f"--max-empty-fraction must be in [0, 1), got {t.max_empty_fraction}")


def load_data(cfg: DataConfig) -> Samples:

    images = Path(cfg.images) if cfg.images else None
    return load_samples(Path(cfg.data), fmt=cfg.format, images=images, delimiter=cfg.delimiter,
                        group_by=cfg.group_by)


@dataclass
class Prepared:
    """Decoded data and the choices made from it, shared by every fold of a run."""

    cfg: RunConfig  # with the resolved image size and channels
    samples: Samples
    pixels: np.ndarray  # (N, C, S, S) uint8
    monitor: str
    loss_name: str
    warnings: list[str] = field(default_factory=list)  # e.g. near-duplicates across the split
    notes: list[str] = field(default_factory=list)  # what --model auto / --strategy auto picked, and why
    option_warnings: list[str] = field(default_factory=list)  # options that will not do what the user hopes
    prepare_s: float = 0.0  # listing, probing, decoding: spent out of --time-limit before training (training.budget)
    pixel_spec: PixelSpec = PLAIN  # --bands and the band scaling the pixels were decoded with (into the bundle)

    @property
    def labels(self) -> LabelSpace:
        return self.samples.labels


@dataclass
class Fitted:
    model: torch.nn.Module
    val_probs: np.ndarray
    wall_s: float
    epochs_run: int
    epochs_total: int
    best_epoch: int
    interrupted: str | None = None  # the signal that stopped training early ("SIGINT", "SIGTERM")


def prepare(cfg: RunConfig, on_skipped: Callable[[list[tuple[Path, str]]], None] | None = None,
            on_note: Callable[[str], None] | None = None) -> Prepared:
    """Validate options, load the data source, choose the backbone, strategy and input spec (--model auto,
    --strategy auto, sizes from the images), then decode every image once (through the decode cache)."""
    started = time.monotonic()
    _check(cfg)
    _quiet_lightning()
    cfg, init_notes = resolve_init_from(cfg)  # --init-from RUN: that run's backbone and channels
    dcfg, tcfg = _with_bands(cfg.data), cfg.train
    samples = load_data(dcfg)
    check_classes(samples, dcfg.data)
    dcfg = replace(dcfg, val_split=auto_val_split(dcfg.val_split, len(samples)))
    labels = samples.labels
    monitor = check_monitor(monitor_key(labels, tcfg), labels.task)
    loss_name = resolve_loss(tcfg.loss, labels.task)
    notes: list[str] = list(init_notes)
    probed = probe_images(samples, dcfg)  # headers of up to 200 images: sizes and channel counts
    side = median_side(probed)
    if side is not None and side < MIN_NATIVE_SIDE:
        raise DataError(f"{dcfg.data}: the images are {side}x{side} px (median of {len(probed[0])} read): too small to "
                        f"tell classes apart. labelwise needs images of at least {MIN_NATIVE_SIDE} px a side")
    backbone = choose_backbone(cfg.model.backbone, side, len(samples), tcfg.strategy)
    spec = get_spec(backbone.value)
    mcfg = replace(cfg.model, backbone=backbone.value)
    n_train = _n_train(len(samples), dcfg.val_split, tcfg.folds)
    tcfg = replace(tcfg, batch_size=tcfg.batch_size or auto_batch_size(spec.batch_size, n_train))
    inp = choose_input(samples, dcfg, min_size=spec.min_size, multiple=spec.size_multiple, probed=probed)
    if backbone.reason:
        notes.append(f"{backbone.reason} ({inp.size} px, {inp.channels} channel{'s' if inp.channels > 1 else ''})")
    strategy = _choose_strategy(cfg.with_(model=mcfg, data=_resolved(dcfg, inp), train=tcfg), len(samples), labels,
                                notes)
    min_side = min_input_side(spec.min_size, use_pretrained(mcfg), strategy, side)
    if min_side > inp.size and dcfg.image_size is None:
        inp = choose_input(samples, dcfg, min_size=min_side, multiple=spec.size_multiple, probed=probed)
        notes.append(f"{inp.size} px input: a linear probe of ImageNet features needs at least {min_side} px")
    pixel_spec = fit_pixel_spec(samples.paths, parse_bands(dcfg.bands), max_pixels=dcfg.max_pixels,
                                workers=dcfg.workers)
    if pixel_spec.scaled:
        notes.append("high-bit images: each band scaled by its 1st-99th percentiles over a sample of the training "
                     "images (" + ", ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(pixel_spec.low, pixel_spec.high))
                     + "), not x / 257; stored in the bundle for predict and serve")
    samples, pixels = decode_samples(samples, inp.size, inp.channels, strict=dcfg.strict,
                                     max_pixels=dcfg.max_pixels, workers=dcfg.workers,
                                     cache_dir=resolve_cache_dir(dcfg.cache), pixel_spec=pixel_spec)
    if on_skipped and samples.skipped:
        on_skipped(samples.skipped)
    if len(samples) < 2:
        raise DataError(f"{dcfg.data}: fewer than 2 readable images; nothing to train on")
    # absolute data path in config.yaml: the report and `evaluate` find the data from anywhere
    resolved = replace(_resolved(dcfg, inp), data=str(Path(dcfg.data).resolve()))
    smoothing = tcfg.label_smoothing
    if smoothing is None:  # softened one-hot targets: ~+0.5 point on Fashion-MNIST in a 10-minute budget
        smoothing = DEFAULT_LABEL_SMOOTHING if loss_name == "ce" else 0.0
    precision = _choose_precision(tcfg, mcfg, strategy, notes)
    # every `auto` / unset choice resolved here, once: later stages and config.yaml read these values
    # --optimizer auto, --lr and --weight-decay unset: the backbone's recipe (its lr scaled to the batch, linear rule)
    # on sets large enough for it; AdamW on small ones, which converges in the few steps they give
    if n_train >= spec.recipe_min_images:
        recipe, recipe_lr = spec.optimizer, (spec.lr * tcfg.batch_size / spec.batch_size if spec.lr else None)
    else:
        recipe, recipe_lr = "adamw", None
    tcfg = resolve_recipe(tcfg, recipe, recipe_lr)
    prep = Prepared(cfg.with_(data=resolved, model=replace(mcfg, pretrained=use_pretrained(mcfg)),
                              train=replace(tcfg, strategy=strategy, label_smoothing=smoothing, loss=loss_name,
                                            monitor=monitor, precision=precision, epochs=tcfg.max_epochs,
                                            frozen_stages=_frozen_stages(tcfg, mcfg, inp, notes))),
                    samples, pixels, monitor, loss_name, notes=notes, prepare_s=time.monotonic() - started,
                    pixel_spec=pixel_spec)
    if tcfg.freeze_epochs and not use_pretrained(mcfg):
        prep.option_warnings.append(f"--freeze-epochs {tcfg.freeze_epochs} with a from-scratch backbone "
                                    f"({backbone.value}) trains the head on random features at first; it only "
                                    "helps with pretrained weights")
    prep.option_warnings += _frozen_stages_warnings(tcfg, mcfg, inp.channels)
    for note in prep.notes:
        log.info(note)
        if on_note and _is_rank_zero():
            on_note(note)
    return prep


def _frozen_stages_warnings(tcfg: TrainConfig, mcfg: ModelConfig, channels: int) -> list[str]:
    """--frozen-stages N given by the user, where it cannot do what it says."""
    n = tcfg.frozen_stages
    if not n:
        return []
    if not use_pretrained(mcfg):
        return [f"--frozen-stages {n}: {mcfg.backbone} trains from scratch, so nothing is frozen"]
    from labelwise.models.backbones import create_backbone
    from labelwise.models.freeze import max_stages

    blocks = max_stages(create_backbone(mcfg.backbone, in_chans=3))
    if not blocks:
        return [f"--frozen-stages {n}: labelwise does not know where {mcfg.backbone}'s stem and blocks are "
                "(it knows EfficientNet/MobileNet and ResNet layouts), so every layer trains"]
    out = []
    if n > blocks:
        out.append(f"--frozen-stages {n}: {mcfg.backbone} has {blocks} blocks; all of them stay frozen (only its "
                   "last layers and the head train)")
    if channels > 3:
        out.append(f"--frozen-stages {n} with {channels}-band images: the stem's filters for the extra bands stay "
                   "at their starting values")
    return out


def _frozen_stages(tcfg: TrainConfig, mcfg: ModelConfig, inp, notes: list[str]) -> int:
    """--frozen-stages as given (0 for a from-scratch backbone, which has nothing worth keeping), else the
    backbone's own default for pretrained RGB or gray input (labelwise.models.freeze); never with extra bands (the
    stem's filters for them start untrained). Measured at 64 px too: 1.7x the steps of EfficientNet-Lite0."""
    spec = get_spec(mcfg.backbone)
    if not use_pretrained(mcfg):
        return 0
    if tcfg.frozen_stages is not None:
        return tcfg.frozen_stages
    if not spec.frozen_stages or inp.channels > 3:
        return 0
    notes.append(f"fine-tuning with the stem and first {spec.frozen_stages} blocks of {mcfg.backbone} frozen "
                 f"({inp.size} px: no backward through the highest-resolution layers; --frozen-stages 0 trains them)")
    return spec.frozen_stages


def _choose_precision(tcfg: TrainConfig, mcfg: ModelConfig, strategy: str, notes: list[str]) -> str:

    if strategy != "finetune" and tcfg.precision == "auto":
        return "32"  # a linear probe embeds in inference mode and trains its head in seconds
    choice = choose_precision(tcfg.precision, accelerator=tcfg.accelerator, backbone=mcfg.backbone,
                              cpu_bf16=get_spec(mcfg.backbone).cpu_bf16)
    if choice.reason:
        notes.append(choice.reason)
    return choice.value


def _choose_strategy(cfg: RunConfig, n_images: int, labels: LabelSpace, notes: list[str]) -> str:
    """Resolve --strategy auto before decoding (the probe may want larger inputs), from the split sizes
    that training will use and, with --time-limit, a timed fine-tuning step at the chosen input size."""

    mcfg, tcfg, dcfg = cfg.model, cfg.train, cfg.data
    n_train = _n_train(n_images, dcfg.val_split, tcfg.folds)
    n_val = n_images - n_train

    def epoch_s() -> float:
        model = Classifier(mcfg.backbone, len(labels), in_chans=dcfg.channels, pretrained=False,
                           drop_rate=mcfg.drop_rate, fusion=mcfg.fusion)
        shape = (dcfg.channels, dcfg.image_size, dcfg.image_size)
        return estimate_epoch_s(model, shape, n_train, n_val, min(tcfg.batch_size, max(2, n_train)))

    choice = choose_strategy(tcfg.strategy, pretrained=use_pretrained(mcfg), n_train=n_train,
                             time_limit_s=tcfg.time_limit_s, epoch_estimate_s=epoch_s)
    if choice.reason:
        notes.append(choice.reason)
    return choice.value


def _n_train(n_images: int, val_split: float, folds: int) -> int:
    """Training images per fit: all but the validation split, or all but one fold."""
    n_val = n_images // folds if folds > 1 else int(round(n_images * val_split))
    return n_images - n_val


MIN_AUTO_BATCH = 64


def auto_batch_size(preferred: int, n_train: int) -> int:
    """The backbone's batch size, but no more than about 1/32 of the training images (a power of two, at least
    MIN_AUTO_BATCH), so that short runs still take enough steps: the demo's 4,800 Fashion-MNIST images at a fixed 5
    epochs score 0.854 held-out at batch 128 against 0.792 at 256 (cnn-small)."""
    if preferred <= MIN_AUTO_BATCH:
        return preferred
    fits = 1 << max(0, (max(1, n_train // 32)).bit_length() - 1)
    return max(MIN_AUTO_BATCH, min(preferred, fits))


def check_classes(samples: Samples, data: str) -> None:
    """Say plainly when the data cannot make a classifier: one class, or a label on every image or none."""
    labels, counts = samples.labels, samples.targets.sum(0)
    if not labels.multilabel and len(labels) < 2:
        raise DataError(f"{data}: only one class ({', '.join(labels.names) or 'none'}): a classifier needs at least "
                        "two. Add a folder (or CSV label) per class")
    if labels.multilabel and all(c in (0, len(samples)) for c in counts):
        raise DataError(f"{data}: every label is on every image or on none ({', '.join(labels.names)}): there is "
                        "nothing to tell apart")


def check_training_split(prep: Prepared, train_idx: np.ndarray) -> None:
    """Every class has training images (multi-class: else an error; multi-label: a warning in metrics.json)."""
    labels = prep.labels
    in_train = prep.samples.targets[train_idx].sum(0)
    missing = [f"{n!r} ({int(t)} image{'s' if t != 1 else ''} in all)"
               for n, c, t in zip(labels.names, in_train, prep.samples.targets.sum(0)) if c == 0]
    if not missing:
        return
    if not labels.multilabel:
        raise DataError(f"{prep.cfg.data.data}: class{'es' if len(missing) > 1 else ''} {', '.join(missing)} "
                        "got no image in the training split, so the model cannot learn them. Add images, or "
                        "lower --val-split")
    line = (f"labels {', '.join(missing)} have no positive image in the training split: the model cannot learn "
            "them. Add images, or lower --val-split")
    if line not in prep.warnings:
        prep.warnings.append(line)
        log.warning(line)


def check_duplicates(prep: Prepared, splits: list[tuple[np.ndarray, np.ndarray]],
                     on_warning: Callable[[str], None] | None = None) -> None:
    """Warn about exact and near-duplicate images on both sides of a split (leakage), with their paths."""

    lines = describe_duplicates(fold_duplicates(fingerprint_pixels(prep.pixels), splits), prep.samples.paths)
    if lines:
        prep.warnings.append(lines[0] + " Use --group-by to keep copies of one image in the same split.")
        if on_warning and _is_rank_zero():
            for line in lines:
                on_warning(line)


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def use_pretrained(mcfg: ModelConfig) -> bool:
    """--pretrained / --no-pretrained as given; unset = yes when the backbone ships weights offline."""
    if mcfg.pretrained is not None:
        return mcfg.pretrained

    return get_spec(mcfg.backbone).pretrained == "builtin-offline"


def init_head_bias(model: torch.nn.Module, train_targets: np.ndarray, labels: LabelSpace) -> None:
    """Start the head at the label priors (log-odds / log-frequency), not at 50/50.

    With a zero-initialised head, every image starts at the training frequency of each label, so
    the first steps learn from the image instead of the class balance (as in RetinaNet's prior init).
    """
    freq = np.clip(np.asarray(train_targets, dtype=np.float64).mean(0), 1e-4, 1 - 1e-4)
    bias = np.log(freq / (1 - freq)) if labels.multilabel else np.log(freq)
    with torch.no_grad():
        model.head.bias.copy_(torch.as_tensor(bias, dtype=model.head.bias.dtype))


def _with_bands(d: DataConfig) -> DataConfig:
    """--bands checked and written "3,2,1"; the channel count is theirs."""
    bands = parse_bands(d.bands)
    if bands is None:
        return d
    if d.channels not in (None, len(bands)):
        raise ConfigError(f"--bands {format_bands(bands)} gives {len(bands)} channel{'s' if len(bands) > 1 else ''}, "
                          f"not the {d.channels} asked for (--channels or --init-from); leave --channels out")
    return replace(d, bands=format_bands(bands), channels=len(bands))


def _resolved(d: DataConfig, inp) -> DataConfig:
    return replace(d, image_size=inp.size, channels=inp.channels)


