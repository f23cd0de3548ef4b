"""train(): data -> decoded arrays -> split -> Lightning fit -> thresholds -> scores -> bundle."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .bundle import ModelMeta, library_versions, save_model, write_csv, write_json
from .config import DataConfig, ModelConfig, RunConfig, TrainConfig
from .data.decoded import decode_samples
from .data.module import SAMPLERS, ArrayDataset, choose_input, make_loader, make_train_loader, sampling_weights
from .data.samples import Samples
from .data.splits import train_val_split
from .data.transforms import check_preset
from .engine import load_checkpoint
from .errors import ConfigError, DataError, check_choice
from .evaluation import score, train_stats
from .labels import LabelSpace
from .metrics import check_monitor
from .predict import model_probs

log = logging.getLogger("labelwise")
DEFAULT_LABEL_SMOOTHING = 0.1  # multi-class cross-entropy, when --label-smoothing is not given


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]  # what metrics.json holds
    skipped: list[tuple[Path, str]]
    epoch_time_s: float  # mean wall time per epoch, validation included
    epochs_run: int

    @property
    def warnings(self) -> list[str]:
        return self.metrics.get("warnings", [])


def make_config(data: str | Path, out: str | Path = "runs/run", **options: Any) -> RunConfig:
    """Build a RunConfig from flat keyword options (``epochs=3, backbone="cnn-small"``).

    An unknown option raises ConfigError with a "did you mean ...?" hint.
    """
    sections: dict[str, dict[str, Any]] = {"data": {"data": str(data)}, "model": {}, "train": {}}
    owners = {f.name: name for name, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
              for f in fields(cls)}
    for key, value in options.items():
        if key not in owners:
            import difflib

            hint = difflib.get_close_matches(key, list(owners), n=1)
            raise ConfigError(f"unknown option {key!r}." + (f" Did you mean {hint[0]!r}?" if hint else "")
                              + f" Options: {', '.join(sorted(owners))}")
        sections[owners[key]][key] = value
    return RunConfig(out=str(out), data=DataConfig(**sections["data"]), model=ModelConfig(**sections["model"]),
                     train=TrainConfig(**sections["train"]))


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _check(cfg: RunConfig) -> None:
    t = cfg.train
    if t.epochs is not None and t.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {t.epochs}")
    if t.time_limit_s is not None and not t.time_limit_s > 0:
        raise ConfigError(f"--time-limit must be positive, got {t.time_limit_s} s")
    if t.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {t.batch_size}")
    if not t.lr >= 0:
        raise ConfigError(f"--lr must be >= 0, got {t.lr}")
    if t.class_weights not in ("none", "auto"):
        raise ConfigError(f"--class-weights must be 'auto' or 'none', got {t.class_weights!r}")
    if t.threshold is not None and not 0.0 < t.threshold < 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1, got {t.threshold}")
    check_preset(t.augment)
    from .engine import OPTIMIZERS, SCHEDULERS

    check_choice("--optimizer", t.optimizer, OPTIMIZERS)
    check_choice("--scheduler", t.scheduler, SCHEDULERS)
    epochs = t.max_epochs
    if t.freeze_epochs < 0 or t.freeze_epochs >= epochs and t.freeze_epochs > 0:
        raise ConfigError(f"--freeze-epochs {t.freeze_epochs} must be between 0 and --epochs - 1 ({epochs - 1})")
    if t.folds < 1:
        raise ConfigError(f"--folds must be 2 or more for cross-validation (1 = a single split), got {t.folds}")
    if t.mixup < 0 or t.cutmix < 0:
        raise ConfigError("--mixup and --cutmix take a Beta concentration >= 0 (0 = off), e.g. 0.2 or 1.0")
    check_choice("--sampler", t.sampler, SAMPLERS)
    from .auto import check_strategy

    check_strategy(t.strategy)
    from .precision import PRECISIONS

    check_choice("--precision", t.precision, PRECISIONS)
    if t.strategy == "linear-probe" and (t.distributed != "auto" or t.num_nodes > 1):
        raise ConfigError("--strategy linear-probe runs in one process (it embeds once and trains a head in "
                          "seconds); drop --distributed / --num-nodes, or use --strategy finetune")
    if t.max_empty_fraction is not None and not 0.0 <= t.max_empty_fraction < 1.0:
        raise ConfigError(f"--max-empty-fraction must be in [0, 1), got {t.max_empty_fraction}")


def load_data(cfg: DataConfig) -> Samples:
    from .data.sources import load_samples

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


def prepare(cfg: RunConfig, on_skipped: Callable[[list[tuple[Path, str]]], None] | None = None,
            on_note: Callable[[str], None] | None = None) -> Prepared:
    """Validate options, load the data source, choose the backbone, strategy and input spec (--model auto,
    --strategy auto, sizes from the images), then decode every image once (through the decode cache)."""
    from dataclasses import replace

    from .auto import choose_backbone, min_input_side
    from .data.cache import resolve_cache_dir
    from .data.module import median_side, probe_images
    from .engine import monitor_key
    from .models.backbones import get_spec

    _check(cfg)
    _quiet_lightning()
    dcfg, tcfg = cfg.data, cfg.train
    samples = load_data(dcfg)
    labels = samples.labels
    monitor = check_monitor(monitor_key(labels, tcfg), labels.task)
    loss_name = tcfg.loss if tcfg.loss != "auto" else ("bce" if labels.multilabel else "ce")
    notes: list[str] = []
    probed = probe_images(samples, dcfg)  # headers of up to 200 images: sizes and channel counts
    side = median_side(probed)
    backbone = choose_backbone(cfg.model.backbone, side, len(samples), tcfg.strategy)
    spec = get_spec(backbone.value)
    mcfg = replace(cfg.model, backbone=backbone.value)
    inp = choose_input(samples, dcfg, min_size=spec.min_size, multiple=spec.size_multiple, probed=probed)
    if backbone.reason:
        notes.append(f"{backbone.reason} ({inp.size} px, {inp.channels} channel{'s' if inp.channels > 1 else ''})")
    strategy = _choose_strategy(cfg.with_(model=mcfg, data=_resolved(dcfg, inp)), len(samples), labels, notes)
    min_side = min_input_side(spec.min_size, use_pretrained(mcfg), strategy, side)
    if min_side > inp.size and dcfg.image_size is None:
        inp = choose_input(samples, dcfg, min_size=min_side, multiple=spec.size_multiple, probed=probed)
        notes.append(f"{inp.size} px input: a linear probe of ImageNet features needs at least {min_side} px")
    samples, pixels = decode_samples(samples, inp.size, inp.channels, strict=dcfg.strict,
                                     max_pixels=dcfg.max_pixels, workers=dcfg.workers,
                                     cache_dir=resolve_cache_dir(dcfg.cache))
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
    prep = Prepared(cfg.with_(data=resolved, model=mcfg,
                              train=replace(tcfg, strategy=strategy, label_smoothing=smoothing,
                                            precision=precision, epochs=tcfg.max_epochs)),
                    samples, pixels, monitor, loss_name, notes=notes)
    if tcfg.freeze_epochs and not use_pretrained(mcfg):
        prep.option_warnings.append(f"--freeze-epochs {tcfg.freeze_epochs} with a from-scratch backbone "
                                    f"({backbone.value}) trains the head on random features at first; it only "
                                    "helps with pretrained weights")
    for note in prep.notes:
        log.info(note)
        if on_note and _is_rank_zero():
            on_note(note)
    return prep


def _choose_precision(tcfg: TrainConfig, mcfg: ModelConfig, strategy: str, notes: list[str]) -> str:
    from .models.backbones import get_spec
    from .precision import choose_precision

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
    from .auto import choose_strategy, estimate_epoch_s
    from .models.classifier import Classifier

    mcfg, tcfg, dcfg = cfg.model, cfg.train, cfg.data
    k = tcfg.folds
    n_val = n_images // k if k > 1 else int(round(n_images * dcfg.val_split))
    n_train = n_images - n_val

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


def check_duplicates(prep: Prepared, splits: list[tuple[np.ndarray, np.ndarray]],
                     on_warning: Callable[[str], None] | None = None) -> None:
    """Warn about exact and near-duplicate images on both sides of a split (leakage), with their paths."""
    from .data.duplicates import describe_duplicates, fingerprint_pixels, fold_duplicates

    lines = describe_duplicates(fold_duplicates(fingerprint_pixels(prep.pixels), splits), prep.samples.paths)
    if lines:
        prep.warnings.append(lines[0] + " Use --group-by to keep copies of one image in the same split.")
        if on_warning and _is_rank_zero():
            for line in lines:
                on_warning(line)


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def fit(prep: Prepared, train_idx: np.ndarray, val_idx: np.ndarray, run_dir: Path, *, resume: bool = False,
        progress: bool = True) -> Fitted | None:
    """Train one model on train_idx, validating on val_idx; best weights loaded. None on DDP ranks > 0.

    --strategy linear-probe embeds the images once with the frozen pretrained backbone and trains the
    head alone (labelwise.probe); finetune trains everything with Lightning (``fit_finetune``)."""
    if prep.cfg.train.strategy == "linear-probe":
        from .probe import fit_probe

        return fit_probe(prep, train_idx, val_idx, run_dir, progress=progress)
    return fit_finetune(prep, train_idx, val_idx, run_dir, resume=resume, progress=progress)


def fit_finetune(prep: Prepared, train_idx: np.ndarray, val_idx: np.ndarray, run_dir: Path, *,
                 resume: bool = False, progress: bool = True) -> Fitted | None:
    """Train the whole network (optionally head-first with --freeze-epochs) with Lightning."""
    import lightning.pytorch as L

    from .engine import HistoryWriter, LitClassifier, build_trainer
    from .losses import build_loss, class_weights
    from .models.classifier import Classifier

    cfg, labels, y = prep.cfg, prep.labels, prep.samples.targets
    mcfg, tcfg = cfg.model, cfg.train
    L.seed_everything(tcfg.seed, workers=True, verbose=False)
    model = Classifier(mcfg.backbone, len(labels), in_chans=cfg.data.channels, pretrained=use_pretrained(mcfg),
                       weights=mcfg.weights, drop_rate=mcfg.drop_rate, fusion=mcfg.fusion)
    init_head_bias(model, y[train_idx], labels)
    model = model.to(memory_format=torch.channels_last)
    weights = class_weights(y[train_idx], labels.task) if tcfg.class_weights == "auto" else None
    loss_fn = build_loss(prep.loss_name, labels.task, label_smoothing=tcfg.label_smoothing,
                         pos_weight=weights if labels.multilabel else None,
                         class_weight=None if labels.multilabel else weights)

    train_ds = ArrayDataset(prep.pixels[train_idx], y[train_idx])
    val_ds = ArrayDataset(prep.pixels[val_idx], y[val_idx])
    # Drop a ragged last batch only when it would be tiny (BatchNorm dislikes batches of 1).
    drop_last = len(train_ds) % tcfg.batch_size in range(1, 4) and len(train_ds) > tcfg.batch_size
    weights_per_image = sampling_weights(y[train_idx], labels.multilabel, tcfg.sampler == "balanced",
                                         tcfg.max_empty_fraction if labels.multilabel else None)
    train_dl = make_train_loader(train_ds, tcfg.batch_size, seed=tcfg.seed, drop_last=drop_last,
                                 weights=weights_per_image)
    val_dl = make_loader(val_ds, max(tcfg.batch_size, 128), shuffle=False)

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    lit = LitClassifier(model, labels, tcfg, loss_fn, steps_per_epoch=len(train_dl), monitor=prep.monitor)
    history = HistoryWriter(run_dir / "history.csv")
    trainer, ckpt = build_trainer(tcfg, run_dir, prep.monitor, history, progress=progress)
    ckpt_path = _resume_path(run_dir) if resume else None
    resumed_epochs = _epoch_of(ckpt_path)  # read now: training overwrites last.ckpt
    if ckpt_path:
        history.load_existing()
    started = time.monotonic()
    trainer.fit(lit, train_dl, val_dl, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    wall = time.monotonic() - started
    if not trainer.is_global_zero:
        return None  # DDP: rank 0 alone scores the model and writes the bundle
    epochs_run = max(0, trainer.current_epoch - resumed_epochs)
    _load_best(model, ckpt.best_model_path)
    val_probs = model_probs(model, prep.pixels[val_idx], labels.multilabel)
    return Fitted(model, val_probs, wall, epochs_run, int(trainer.current_epoch), _epoch_of(ckpt.best_model_path))


def use_pretrained(mcfg: ModelConfig) -> bool:
    """--pretrained / --no-pretrained as given; unset = yes when the backbone ships weights offline."""
    if mcfg.pretrained is not None:
        return mcfg.pretrained
    from .models.backbones import get_spec

    return get_spec(mcfg.backbone).pretrained == "builtin-offline"


def fit_thresholds_for(prep: Prepared, probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    from .thresholds import fit_thresholds

    t, labels = prep.cfg.train, prep.labels
    if labels.multilabel and t.threshold is None:
        return fit_thresholds(probs, targets, t.threshold_objective)
    return np.full(len(labels), t.threshold if t.threshold is not None else 0.5)


def finalize(prep: Prepared, fitted: Fitted, train_idx: np.ndarray, val_idx: np.ndarray, run_dir: Path
             ) -> TrainResult:
    """Tune thresholds on validation, score against baselines, write the bundle and its files."""
    from .metrics import to_jsonable

    cfg, labels, y = prep.cfg, prep.labels, prep.samples.targets
    thresholds = fit_thresholds_for(prep, fitted.val_probs, y[val_idx])
    stats = train_stats(y[train_idx], labels)
    tuned = labels.multilabel and cfg.train.threshold is None
    metrics = score(fitted.val_probs, y[val_idx], labels, thresholds, stats, prep.monitor,
                    at_least_one=cfg.train.at_least_one, tuned_on_same_data=tuned)
    metrics["data_warnings"] = list(prep.warnings)
    metrics["run"] = {"train_images": int(len(train_idx)), "val_images": int(len(val_idx)),
                      "backbone": cfg.model.backbone, "pretrained": use_pretrained(cfg.model),
                      "strategy": cfg.train.strategy, "choices": list(prep.notes),
                      "skipped_images": len(prep.samples.skipped), "epochs": fitted.epochs_total,
                      "best_checkpoint_epoch": fitted.best_epoch, "wall_time_s": round(fitted.wall_s, 1)}
    save_model(run_dir, fitted.model, _meta(prep, fitted.model, thresholds, stats))
    write_json(run_dir / "metrics.json", to_jsonable(metrics))
    _write_predictions(run_dir / "val_predictions.csv", [prep.samples.paths[i] for i in val_idx], y[val_idx],
                       fitted.val_probs, labels)
    _write_skipped(prep, run_dir)
    return TrainResult(run_dir, metrics, prep.samples.skipped, fitted.wall_s / max(1, fitted.epochs_run),
                       fitted.epochs_run)


def _meta(prep: Prepared, model: torch.nn.Module, thresholds: np.ndarray, stats, backbone: str | None = None,
          members: tuple[str, ...] = ()) -> ModelMeta:
    cfg = prep.cfg
    return ModelMeta(labels=prep.labels, backbone=backbone or cfg.model.backbone, in_chans=cfg.data.channels,
                     image_size=cfg.data.image_size, thresholds=tuple(float(t) for t in thresholds),
                     at_least_one=cfg.train.at_least_one, drop_rate=cfg.model.drop_rate,
                     mean=tuple(model.mean.flatten().tolist()), std=tuple(model.std.flatten().tolist()),
                     seed=cfg.train.seed, versions=library_versions(), members=members, fusion=cfg.model.fusion,
                     **stats.as_meta())


def _write_skipped(prep: Prepared, run_dir: Path) -> None:
    if prep.samples.skipped:
        write_csv(run_dir / "skipped_images.csv", ["path", "reason"],
                  [[str(p), r] for p, r in prep.samples.skipped])


def train(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
          on_skipped: Callable[[list[tuple[Path, str]]], None] | None = None,
          on_warning: Callable[[str], None] | None = None,
          on_note: Callable[[str], None] | None = None) -> TrainResult | None:
    """Train a classifier as configured and write the run directory (the model bundle).

    With ``cfg.train.folds`` > 1 it runs k-fold cross-validation instead (see ``train_folds``).
    Returns None in the non-zero ranks of a distributed run.
    """
    prep = prepare(cfg, on_skipped, on_note)
    for line in prep.option_warnings:
        log.warning(line)
        if on_warning and _is_rank_zero():
            on_warning(line)
    if cfg.train.folds > 1:
        return train_folds(prep, resume=resume, progress=progress, on_warning=on_warning)
    run_dir = Path(cfg.out)
    train_idx, val_idx = train_val_split(prep.samples, cfg.data.val_split, cfg.train.seed)
    check_duplicates(prep, [(train_idx, val_idx)], on_warning)
    fitted = fit(prep, train_idx, val_idx, run_dir, resume=resume, progress=progress)
    if fitted is None:
        return None
    return finalize(prep, fitted, train_idx, val_idx, run_dir)


def train_folds(prep: Prepared, *, resume: bool = False, progress: bool = True,
                on_warning: Callable[[str], None] | None = None) -> TrainResult | None:
    """k-fold cross-validation: one model per fold in RUN/fold_<i>/, out-of-fold probabilities for every
    image in RUN/oof_predictions.csv, per-fold metrics with mean and spread, and at RUN/ an ensemble of
    the fold models (thresholds tuned on the out-of-fold probabilities) that predict/evaluate accept."""
    from .data.splits import kfold_splits
    from .ensemble import Ensemble
    from .metrics import summary_of, to_jsonable

    cfg, labels, y = prep.cfg, prep.labels, prep.samples.targets
    run_dir = Path(cfg.out)
    k = cfg.train.folds
    oof = np.full((len(y), len(labels)), np.nan, dtype=np.float32)
    fold_results, models, wall = [], [], 0.0
    splits = kfold_splits(prep.samples, k, cfg.train.seed)
    check_duplicates(prep, splits, on_warning)
    for i, (train_idx, val_idx) in enumerate(splits):
        fold_dir = run_dir / f"fold_{i + 1}"
        fitted = fit(prep, train_idx, val_idx, fold_dir, resume=resume, progress=progress)
        if fitted is None:
            return None
        result = finalize(prep, fitted, train_idx, val_idx, fold_dir)
        oof[val_idx] = fitted.val_probs
        fold_results.append(result)
        models.append(fitted.model)
        wall += fitted.wall_s
    thresholds = fit_thresholds_for(prep, oof, y)
    stats = train_stats(y, labels)
    metrics = score(oof, y, labels, thresholds, stats, prep.monitor, at_least_one=cfg.train.at_least_one,
                    tuned_on_same_data=labels.multilabel and cfg.train.threshold is None)
    metrics["data_warnings"] = list(prep.warnings)
    per_fold = [summary_of(r.metrics["model"]) for r in fold_results]
    keys = [key for key, v in per_fold[0].items() if isinstance(v, (int, float))]
    metrics["folds"] = {
        "k": k, "per_fold": per_fold,
        "mean": {key: float(np.nanmean([f[key] for f in per_fold])) for key in keys},
        "std": {key: float(np.nanstd([f[key] for f in per_fold])) for key in keys},
    }
    metrics["notes"] = metrics.get("notes", []) + [
        f"Scores are out-of-fold: each image is scored by the fold model that did not train on it ({k} folds). "
        "The bundle in this folder is the ensemble of the fold models."]
    metrics["run"] = {"train_images": int(len(y)), "val_images": int(len(y)), "folds": k,
                      "backbone": cfg.model.backbone, "pretrained": use_pretrained(cfg.model),
                      "strategy": cfg.train.strategy, "choices": list(prep.notes),
                      "skipped_images": len(prep.samples.skipped), "wall_time_s": round(wall, 1)}
    ensemble = Ensemble(models, labels.multilabel)
    members = tuple(cfg.model.backbone for _ in models)
    save_model(run_dir, ensemble, _meta(prep, models[0], thresholds, stats, backbone="ensemble", members=members))
    write_json(run_dir / "metrics.json", to_jsonable(metrics))
    cfg.save(run_dir / "config.yaml")
    _write_predictions(run_dir / "oof_predictions.csv", prep.samples.paths, y, oof, labels)
    _write_skipped(prep, run_dir)
    epochs = sum(r.epochs_run for r in fold_results)
    return TrainResult(run_dir, metrics, prep.samples.skipped, wall / max(1, epochs), epochs)


def init_head_bias(model: torch.nn.Module, train_targets: np.ndarray, labels: LabelSpace) -> None:
    """Start the head at the label priors (log-odds / log-frequency), not at 50/50.

    With a zero-initialised head, every image starts at the training frequency of each label, so
    the first steps learn from the image instead of the class balance (as in RetinaNet's prior init).
    """
    freq = np.clip(np.asarray(train_targets, dtype=np.float64).mean(0), 1e-4, 1 - 1e-4)
    bias = np.log(freq / (1 - freq)) if labels.multilabel else np.log(freq)
    with torch.no_grad():
        model.head.bias.copy_(torch.as_tensor(bias, dtype=model.head.bias.dtype))


def _resolved(d: DataConfig, inp) -> DataConfig:
    from dataclasses import replace

    return replace(d, image_size=inp.size, channels=inp.channels)


def _resume_path(run_dir: Path) -> str | None:
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        log.warning("--resume: no checkpoint at %s; starting from scratch", last)
        return None
    return str(last)


def _epoch_of(ckpt_path: str | None) -> int:
    """Epochs completed when a checkpoint was written (Lightning stores the 0-based epoch)."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return 0
    return int(load_checkpoint(ckpt_path).get("epoch", -1)) + 1


def _load_best(model: torch.nn.Module, best_path: str) -> None:
    if not best_path or not Path(best_path).is_file():
        return  # no validation ran (e.g. a time limit hit first): keep the final weights
    state = load_checkpoint(best_path)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})


def _write_predictions(path: Path, paths: list[Path], targets: np.ndarray, probs: np.ndarray,
                       labels: LabelSpace) -> None:
    header = ["image", "true_labels", *labels.names]
    rows = [[str(p), " ".join(labels.names[k] for k in np.flatnonzero(t)), *(f"{v:.6f}" for v in pr)]
            for p, t, pr in zip(paths, targets, probs)]
    write_csv(path, header, rows)
