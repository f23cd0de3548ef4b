"""train(): data -> decoded arrays -> split -> Lightning fit -> thresholds -> scores -> bundle."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
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
from .errors import ConfigError, DataError
from .evaluation import score, train_stats
from .labels import LabelSpace
from .metrics import check_monitor
from .predict import model_probs

log = logging.getLogger("labelwise")


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
    if t.epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {t.epochs}")
    if t.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {t.batch_size}")
    if not t.lr >= 0:
        raise ConfigError(f"--lr must be >= 0, got {t.lr}")
    if t.class_weights not in ("none", "auto"):
        raise ConfigError(f"--class-weights must be 'auto' or 'none', got {t.class_weights!r}")
    if t.threshold is not None and not 0.0 < t.threshold < 1.0:
        raise ConfigError(f"--threshold must be between 0 and 1, got {t.threshold}")
    check_preset(t.augment)
    if t.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {t.sampler!r}")
    if t.max_empty_fraction is not None and not 0.0 <= t.max_empty_fraction < 1.0:
        raise ConfigError(f"--max-empty-fraction must be in [0, 1), got {t.max_empty_fraction}")


def load_data(cfg: DataConfig) -> Samples:
    from .data.sources import load_samples

    images = Path(cfg.images) if cfg.images else None
    return load_samples(Path(cfg.data), fmt=cfg.format, images=images, delimiter=cfg.delimiter)


def train(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
          on_skipped: Callable[[list[tuple[Path, str]]], None] | None = None) -> TrainResult | None:
    """Train a classifier as configured and write the run directory (the model bundle).

    Returns None in the non-zero ranks of a distributed run.
    """
    import lightning.pytorch as L

    from .engine import HistoryWriter, LitClassifier, build_trainer, monitor_key
    from .losses import build_loss, class_weights
    from .models.backbones import get_spec
    from .models.classifier import Classifier

    _check(cfg)
    _quiet_lightning()
    run_dir = Path(cfg.out)
    dcfg, mcfg, tcfg = cfg.data, cfg.model, cfg.train
    spec = get_spec(mcfg.backbone)
    samples = load_data(dcfg)
    labels = samples.labels
    monitor = check_monitor(monitor_key(labels, tcfg), labels.task)
    loss_name = tcfg.loss if tcfg.loss != "auto" else ("bce" if labels.multilabel else "ce")

    inp = choose_input(samples, dcfg, min_size=spec.min_size)
    samples, pixels = decode_samples(samples, inp.size, inp.channels, strict=dcfg.strict,
                                     max_pixels=dcfg.max_pixels, workers=dcfg.workers)
    if on_skipped and samples.skipped:
        on_skipped(samples.skipped)
    if len(samples) < 2:
        raise DataError(f"{dcfg.data}: fewer than 2 readable images; nothing to train on")

    train_idx, val_idx = train_val_split(samples, dcfg.val_split, tcfg.seed)
    y = samples.targets
    L.seed_everything(tcfg.seed, workers=True, verbose=False)
    model = Classifier(mcfg.backbone, len(labels), in_chans=inp.channels, pretrained=mcfg.pretrained,
                       weights=mcfg.weights, drop_rate=mcfg.drop_rate)
    _init_head_bias(model, y[train_idx], labels)
    model = model.to(memory_format=torch.channels_last)
    weights = class_weights(y[train_idx], labels.task) if tcfg.class_weights == "auto" else None
    loss_fn = build_loss(loss_name, labels.task, label_smoothing=tcfg.label_smoothing,
                         pos_weight=weights if labels.multilabel else None,
                         class_weight=None if labels.multilabel else weights)

    train_ds = ArrayDataset(pixels[train_idx], y[train_idx])
    val_ds = ArrayDataset(pixels[val_idx], y[val_idx])
    # Drop a ragged last batch only when it would be tiny (BatchNorm dislikes batches of 1).
    drop_last = len(train_ds) % tcfg.batch_size in range(1, 4) and len(train_ds) > tcfg.batch_size
    weights_per_image = sampling_weights(y[train_idx], labels.multilabel, tcfg.sampler == "balanced",
                                         tcfg.max_empty_fraction if labels.multilabel else None)
    train_dl = make_train_loader(train_ds, tcfg.batch_size, seed=tcfg.seed, drop_last=drop_last,
                                 weights=weights_per_image)
    val_dl = make_loader(val_ds, max(tcfg.batch_size, 128), shuffle=False)

    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.with_(data=_resolved(dcfg, inp))
    cfg.save(run_dir / "config.yaml")
    lit = LitClassifier(model, labels, tcfg, loss_fn, steps_per_epoch=len(train_dl), monitor=monitor)
    history = HistoryWriter(run_dir / "history.csv")
    trainer, ckpt = build_trainer(tcfg, run_dir, monitor, history, progress=progress)
    ckpt_path = _resume_path(run_dir) if resume else None
    if ckpt_path:
        history.load_existing()
    started = time.monotonic()
    trainer.fit(lit, train_dl, val_dl, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    wall = time.monotonic() - started
    if not trainer.is_global_zero:
        return None  # DDP: rank 0 alone scores the model and writes the bundle
    epochs_run = max(0, trainer.current_epoch - (_epoch_of(ckpt_path) if ckpt_path else 0))

    _load_best(model, ckpt.best_model_path)
    lit.eval()
    val_probs = model_probs(model, pixels[val_idx], labels.multilabel)
    from .thresholds import fit_thresholds

    if labels.multilabel and tcfg.threshold is None:
        thresholds = fit_thresholds(val_probs, y[val_idx], tcfg.threshold_objective)
    else:
        thresholds = np.full(len(labels), tcfg.threshold if tcfg.threshold is not None else 0.5)
    stats = train_stats(y[train_idx], labels)
    metrics = score(val_probs, y[val_idx], labels, thresholds, stats, monitor,
                    at_least_one=tcfg.at_least_one, tuned_on_same_data=labels.multilabel and tcfg.threshold is None)
    metrics["run"] = {"train_images": int(len(train_idx)), "val_images": int(len(val_idx)),
                      "skipped_images": len(samples.skipped), "epochs": int(trainer.current_epoch),
                      "best_checkpoint_epoch": _epoch_of(ckpt.best_model_path), "wall_time_s": round(wall, 1)}
    meta = ModelMeta(labels=labels, backbone=mcfg.backbone, in_chans=inp.channels, image_size=inp.size,
                     thresholds=tuple(float(t) for t in thresholds), at_least_one=tcfg.at_least_one,
                     drop_rate=mcfg.drop_rate, mean=tuple(model.mean.flatten().tolist()),
                     std=tuple(model.std.flatten().tolist()), seed=tcfg.seed, versions=library_versions(),
                     **stats.as_meta())
    save_model(run_dir, model, meta)
    from .metrics import to_jsonable

    write_json(run_dir / "metrics.json", to_jsonable(metrics))
    _write_predictions(run_dir / "val_predictions.csv", [samples.paths[i] for i in val_idx], y[val_idx],
                       val_probs, labels)
    if samples.skipped:
        write_csv(run_dir / "skipped_images.csv", ["path", "reason"], [[str(p), r] for p, r in samples.skipped])
    return TrainResult(run_dir, metrics, samples.skipped, wall / max(1, epochs_run), epochs_run)


def _init_head_bias(model: torch.nn.Module, train_targets: np.ndarray, labels: LabelSpace) -> None:
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
