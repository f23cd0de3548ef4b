"""One split: Lightning fit (or a linear probe) -> thresholds -> scores -> the bundle and its files."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelwise.data.loaders import (
    ArrayDataset,
    make_loader,
    make_train_loader,
    sampling_weights,
)
from labelwise.evaluation.metrics import to_jsonable
from labelwise.evaluation.scoring import score, train_stats
from labelwise.evaluation.thresholds import fit_thresholds
from labelwise.io import write_csv, write_json
from labelwise.labels import LabelSpace
from labelwise.malloc import tune_malloc
from labelwise.models.bundle import ModelMeta, library_versions, save_model
from labelwise.models.card import write_hub_and_card
from labelwise.models.classifier import Classifier, model_probs
from labelwise.models.freeze import freeze_early
from labelwise.outputs import bundle_transaction, check_resume_labels
from labelwise.training.loggers import log_final
from labelwise.training.lightning import (
    HistoryWriter,
    LitClassifier,
    build_trainer,
    load_checkpoint,
)
from labelwise.training.loss_modules import class_weights
from labelwise.training.losses import build_loss
from labelwise.training import interrupt
from labelwise.training.budget import for_training
from labelwise.training.init_from import init_record, load_init_weights
from labelwise.training.prepare import (
    Fitted,
    Prepared,
    check_training_split,
    init_head_bias,
    use_pretrained,
)
from labelwise.training.probe import fit_probe

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


def fit(prep: Prepared, train_idx: np.ndarray, val_idx: np.ndarray, run_dir: Path, *, resume: bool = False,
        progress: bool = True) -> Fitted | None:
    """Train one model on train_idx, validating on val_idx; best weights loaded. None on DDP ranks > 0.

    --strategy linear-probe embeds the images once with the frozen pretrained backbone and trains the
    head alone (labelwise.probe); finetune trains everything with Lightning (``fit_finetune``)."""
    check_training_split(prep, train_idx)
    tune_malloc()  # large activations: reuse heap memory instead of a fresh mmap per step (labelwise.malloc)
    if prep.cfg.train.strategy == "linear-probe":
        return fit_probe(prep, train_idx, val_idx, run_dir, progress=progress)
    return fit_finetune(prep, train_idx, val_idx, run_dir, resume=resume, progress=progress)


def fit_finetune(prep: Prepared, train_idx: np.ndarray, val_idx: np.ndarray, run_dir: Path, *,
                 resume: bool = False, progress: bool = True) -> Fitted | None:
    """Train the whole network (optionally head-first with --freeze-epochs) with Lightning."""
    entered = time.monotonic()
    import lightning.pytorch as L


    cfg, labels, y = prep.cfg, prep.labels, prep.samples.targets
    mcfg, tcfg = cfg.model, cfg.train
    L.seed_everything(tcfg.seed, workers=True, verbose=False)
    model = Classifier(mcfg.backbone, len(labels), in_chans=cfg.data.channels,
                       pretrained=use_pretrained(mcfg) and not mcfg.init_from,
                       weights=mcfg.weights, drop_rate=mcfg.drop_rate, fusion=mcfg.fusion)
    init_head_bias(model, y[train_idx], labels)
    if mcfg.init_from:  # the earlier run's backbone (and head, when the labels match) replace the fresh ones
        load_init_weights(model, mcfg.init_from, labels)
    model = model.to(memory_format=torch.channels_last)
    # --frozen-stages: frozen before Lightning (or DDP) wraps the model, so that no process waits for their gradients;
    # LitClassifier.on_train_epoch_start keeps their BatchNorm in eval mode
    freeze_early(model.backbone, tcfg.frozen_stages or 0, eval_mode=False)  # eval mode: on_train_epoch_start
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

    ckpt_path = _resume_path(run_dir) if resume else None
    resumed_epochs = _resume_epochs(run_dir, ckpt_path, labels)  # checked before any file is written
    if interrupt.requested():  # an earlier fold was stopped: do not start this one
        raise interrupt.Interrupted(f"stopped by {interrupt.requested()}; `--resume` continues the run")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    # --time-limit covers the whole command: training gets what decoding and the report leave (config.yaml keeps the limit)
    tcfg = for_training(tcfg, prep.prepare_s + time.monotonic() - entered)
    lit = LitClassifier(model, labels, tcfg, loss_fn, steps_per_epoch=len(train_dl), monitor=prep.monitor)
    history = HistoryWriter(run_dir / "history.csv")
    trainer, ckpt = build_trainer(tcfg, run_dir, prep.monitor, history, progress=progress)
    if ckpt_path:
        history.load_existing()
    started = time.monotonic()
    stopped_by = None
    try:
        trainer.fit(lit, train_dl, val_dl, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    except BaseException as e:  # Ctrl-C / SIGTERM: keep the best checkpoint so far (labelwise.training.interrupt)
        if not interrupt.stopped_by_signal(e):
            raise
        stopped_by = interrupt.requested()
        if not ckpt.best_model_path or not Path(ckpt.best_model_path).is_file():
            raise interrupt.Interrupted(f"stopped by {stopped_by} before the first epoch finished: nothing to "
                                        "save") from None
    wall = time.monotonic() - started
    if not trainer.is_global_zero:
        return None  # DDP: rank 0 alone scores the model and writes the bundle
    epochs_run = max(0, trainer.current_epoch - resumed_epochs)
    best_epoch = _load_best(model, ckpt.best_model_path)
    val_probs = model_probs(model, prep.pixels[val_idx], labels.multilabel)
    return Fitted(model, val_probs, wall, epochs_run, int(trainer.current_epoch), best_epoch,
                  interrupted=stopped_by)


def fit_thresholds_for(prep: Prepared, probs: np.ndarray, targets: np.ndarray) -> np.ndarray:

    t, labels = prep.cfg.train, prep.labels
    if labels.multilabel and t.threshold is None:
        return fit_thresholds(probs, targets, t.threshold_objective)
    return np.full(len(labels), t.threshold if t.threshold is not None else 0.5)


def finalize(prep: Prepared, fitted: Fitted, train_idx: np.ndarray, val_idx: np.ndarray, run_dir: Path
             ) -> TrainResult:
    """Tune thresholds on validation, score against baselines, write the bundle and its files."""

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
                      "best_checkpoint_epoch": fitted.best_epoch, "wall_time_s": round(fitted.wall_s, 1),
                      "init_from": init_record(cfg.model.init_from, labels)}
    if fitted.interrupted:
        metrics["run"]["interrupted"] = True
        metrics["notes"] = metrics.get("notes", []) + [
            f"Training was stopped by {fitted.interrupted} after {fitted.epochs_total} of {cfg.train.max_epochs} "
            f"epochs; this bundle holds the best checkpoint so far (epoch {fitted.best_epoch}). "
            "`labelwise train ... --resume` continues the run."]
    with bundle_transaction(run_dir):  # a full disk half-way leaves no half bundle
        save_model(run_dir, fitted.model, _meta(prep, fitted.model, thresholds, stats))
        write_json(run_dir / "metrics.json", to_jsonable(metrics))
        _write_predictions(run_dir / "val_predictions.csv", [prep.samples.paths[i] for i in val_idx], y[val_idx],
                           fitted.val_probs, labels)
        _write_skipped(prep, run_dir)
    write_hub_and_card(run_dir, fitted.model)  # RUN/hub/ (timm's layout) when expressible, RUN/README.md
    log_final(run_dir, metrics)  # --logger: the final scores, then the loggers close
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
                     augment=cfg.train.augment, vflip=cfg.train.vflip, pixel_spec=prep.pixel_spec, **stats.as_meta())


def _write_skipped(prep: Prepared, run_dir: Path) -> None:
    if prep.samples.skipped:
        write_csv(run_dir / "skipped_images.csv", ["path", "reason"],
                  [[str(p), r] for p, r in prep.samples.skipped])


def _resume_path(run_dir: Path) -> str | None:
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        log.warning("--resume: no checkpoint at %s; starting from scratch", last)
        return None
    return str(last)


def _resume_epochs(run_dir: Path, ckpt_path: str | None, labels: LabelSpace) -> int:
    """Epochs the resume checkpoint holds, after checking that it was trained on these labels."""
    if not ckpt_path:
        return 0
    ckpt = load_checkpoint(ckpt_path)
    head = ckpt.get("state_dict", {}).get("model.head.weight")
    check_resume_labels(run_dir, labels.names, int(head.shape[0]) if head is not None else None)
    return int(ckpt.get("epoch", -1)) + 1


def _load_best(model: torch.nn.Module, best_path: str) -> int:
    """Load the best checkpoint's weights into ``model``; returns its epoch count (0: none was written)."""
    if not best_path or not Path(best_path).is_file():
        return 0  # no validation ran (e.g. a time limit hit first): keep the final weights
    ckpt = load_checkpoint(best_path)
    state = ckpt["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return int(ckpt.get("epoch", -1)) + 1


def _write_predictions(path: Path, paths: list[Path], targets: np.ndarray, probs: np.ndarray,
                       labels: LabelSpace) -> None:
    header = ["image", "true_labels", *labels.names]
    rows = [[str(p), " ".join(labels.names[k] for k in np.flatnonzero(t)), *(f"{v:.6f}" for v in pr)]
            for p, t, pr in zip(paths, targets, probs)]
    write_csv(path, header, rows)
