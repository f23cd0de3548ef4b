"""The LightningModule (loss, optimiser, schedule, validation metrics) and Trainer construction."""
from __future__ import annotations

import csv
import io
import math
import pickle
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from labelwise.config import TrainConfig
from labelwise.data.transforms import AugmentConfig, augment_batch, mix_batch
from labelwise.errors import BundleError
from labelwise.evaluation.metrics import (
    MONITOR_DEFAULT,
    compute_metrics,
    higher_is_better,
)
from labelwise.io import atomic_write_bytes, write_csv
from labelwise.labels import LabelSpace
from labelwise.models.freeze import freeze_for_epoch
from labelwise.training.interrupt import StopOnSignal
from labelwise.training.loggers import build_loggers, epoch_metrics
from labelwise.training.optim import PLAN_EPOCHS, PLAN_MARGIN, build_optimizer


TRAIN_SAMPLE_MIN = 64
TRAIN_SAMPLE = 1000  # training images scored (without augmentation) at each validation, for the train_* curves


def probabilities(logits: torch.Tensor, labels: LabelSpace) -> torch.Tensor:
    return torch.sigmoid(logits) if labels.multilabel else torch.softmax(logits, dim=1)


class LitClassifier(L.LightningModule):
    """Wraps a Classifier: uint8 batches in, loss out; validation metrics over the whole epoch."""

    def __init__(self, model: torch.nn.Module, labels: LabelSpace, cfg: TrainConfig, loss_fn: torch.nn.Module,
                 steps_per_epoch: int, monitor: str):
        super().__init__()
        self.model = model
        self.labels = labels
        self.cfg = cfg
        self.loss_fn = loss_fn
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.monitor = monitor
        self.plan: dict = {}  # the LR schedule reads its total length from here (see _plan_for_budget)
        self.planned_epochs: int | None = None
        self._last_epoch_end = time.monotonic()
        self._epochs_this_fit = 0
        self._fit_started = time.monotonic()
        self._val_started: float | None = None
        self.val_s = 0.0  # seconds the latest validation pass took (the scoring after training repeats one)
        self.aug_gen = torch.Generator().manual_seed(cfg.seed)
        self.mixing = AugmentConfig(cfg.augment, cfg.vflip, cfg.mixup, cfg.cutmix)
        self._val_probs: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self._val_index: list[torch.Tensor] = []
        self._train_loss_sum = 0.0
        self._train_count = 0
        self.last_val: dict[str, float] = {}
        self.last_train: dict[str, float] = {}  # the same metrics on a fixed sample of training images
        self._train_sample: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x_uint8: torch.Tensor) -> torch.Tensor:
        return self.model(x_uint8.float().div_(255.0).contiguous(memory_format=torch.channels_last))

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        x = augment_batch(x.float().div_(255.0), self.cfg.augment, self.aug_gen, vflip=self.cfg.vflip)
        x, y = mix_batch(x, y, self.mixing, self.aug_gen)
        logits = self.model(x.contiguous(memory_format=torch.channels_last))
        loss = self.loss_fn(logits, y)
        self._train_loss_sum += float(loss.detach()) * len(x)
        self._train_count += len(x)
        self.log("train_loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False, batch_size=len(x))
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum, self._train_count = 0.0, 0
        # Frozen: no gradients into the backbone (backward stops at the head: much faster) and its
        # BatchNorm statistics stay as pretrained. Lightning has just put everything in train mode.
        freeze_for_epoch(self.model.backbone, self.current_epoch, self.cfg.freeze_epochs, self.cfg.frozen_stages)

    def on_validation_epoch_start(self) -> None:
        self._val_started = time.monotonic()

    def validation_step(self, batch, batch_idx):
        x, y, idx = batch
        # full precision even under mixed-precision training: the logged metrics (and the best epoch
        # they pick) are those of the fp32 weights the bundle saves and every engine predicts with
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = self(x)
        self.log("val_loss", self.loss_fn(logits, y), on_epoch=True, batch_size=len(x), sync_dist=True)
        self._val_probs.append(probabilities(logits, self.labels).detach().float())
        self._val_targets.append(y.detach())
        self._val_index.append(idx.to(y.device))

    def on_validation_epoch_end(self) -> None:
        if self._val_started is not None and not self.trainer.sanity_checking:
            self.val_s = time.monotonic() - self._val_started
        if not self._val_probs:
            return
        probs, targets, index = torch.cat(self._val_probs), torch.cat(self._val_targets), torch.cat(self._val_index)
        self._val_probs, self._val_targets, self._val_index = [], [], []
        if self.trainer.world_size > 1:
            # Metrics over the whole validation set, not averaged per process: gather every shard,
            # then keep one row per image (DistributedSampler pads shards with repeats).
            probs, targets, index = (self.all_gather(t).flatten(0, 1) for t in (probs, targets, index))
            order = torch.argsort(index)
            index, probs, targets = index[order], probs[order], targets[order]
            first = torch.ones_like(index, dtype=torch.bool)
            first[1:] = index[1:] != index[:-1]
            probs, targets = probs[first], targets[first]
        probs, targets = probs.cpu(), targets.cpu()
        metrics = compute_metrics(probs.numpy(), targets.numpy().astype(np.uint8), self.labels)
        summary = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"}
        for key, value in summary.items():
            if not math.isnan(value):
                self.log(f"val_{key}", value, prog_bar=key == self.monitor)
        self.last_val = summary
        self.last_train = self._score_train_sample()

    def _score_train_sample(self) -> dict[str, float]:
        """Metrics on up to TRAIN_SAMPLE training images, fixed for the run and seen without augmentation,
        so that history.csv shows the train/validation gap in the validation's own terms."""
        if self._train_sample is None:
            ds = getattr(self.trainer.train_dataloader, "dataset", None)
            if not hasattr(ds, "pixels") or not hasattr(ds, "targets") or not len(ds):
                return {}
            rows = torch.randperm(len(ds), generator=torch.Generator().manual_seed(self.cfg.seed))[:self._sample_size()]
            rows = rows.sort().values
            self._train_sample = (ds.pixels[rows], ds.targets[rows])
        pixels, targets = self._train_sample
        probs = []
        with torch.no_grad(), torch.autocast(device_type=self.device.type, enabled=False):
            step = min(256, self.cfg.batch_size or 64)  # the training batch: 256 photos at 224 px ran at 1/3 the speed
            for start in range(0, len(pixels), step):
                probs.append(probabilities(self(pixels[start:start + step].to(self.device)), self.labels).float().cpu())
        metrics = compute_metrics(torch.cat(probs).numpy(), targets.numpy().astype(np.uint8), self.labels)
        return {f"train_{k}": float(v) for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n" and k != "loss"}

    def _sample_size(self) -> int:
        """TRAIN_SAMPLE, but at most half the validation set (at least TRAIN_SAMPLE_MIN): scoring it must not cost
        more than validating (a 300-image photo set at 224 px spent 17 s of a 75-s epoch scoring 1,000, and
        still 7.5 s of an 18-s epoch scoring 240 in batches of 256)."""
        val = getattr(self.trainer.val_dataloaders, "dataset", None)
        n_val = len(val) if val is not None and hasattr(val, "__len__") else 2 * TRAIN_SAMPLE
        return min(TRAIN_SAMPLE, max(TRAIN_SAMPLE_MIN, n_val // 2))

    def train_loss_epoch(self) -> float:
        return self._train_loss_sum / max(1, self._train_count)

    def configure_optimizers(self):
        return build_optimizer(self.model, self.cfg, self.steps_per_epoch, self.monitor, self.plan)

    def on_train_start(self) -> None:
        self._fit_started = self._last_epoch_end = time.monotonic()
        self._epochs_this_fit = 0

    def on_train_epoch_end(self) -> None:
        now = time.monotonic()
        epoch_s, self._last_epoch_end = now - self._last_epoch_end, now
        self._epochs_this_fit += 1
        # the first PLAN_EPOCHS epochs of this fit, and every epoch in the first half of the schedule: the first
        # epochs of a run can be slower than the rest (Fashion-MNIST in fp32: 42 s, then 33-34 s), and a plan
        # fixed from them left 20% of the budget unused
        first_half = 2 * (self.current_epoch + 1) <= (self.planned_epochs or 0)
        if self.cfg.time_limit_s and (self._epochs_this_fit <= PLAN_EPOCHS or first_half):
            self._plan_for_budget(now, epoch_s)

    def _plan_for_budget(self, now: float, epoch_s: float) -> None:
        """Fit the whole schedule into --time-limit, after each of the first PLAN_EPOCHS epochs.

        The latest epoch's time (validation included) tells how many epochs fit in the rest of the
        budget; the run stops there and the LR schedule is compressed so that it still warms up and
        decays completely, instead of being cut off at a high learning rate. The first epoch carries
        one-off costs (Fashion-MNIST: 46 s vs 37 s for the next ones), so planning from it alone left a
        quarter of the budget unused; re-planning from the next epochs, up to half-way through the schedule,
        moves the end by a few percent while the learning rate is still high (the cosine schedule reads the
        total at every step, so its curve stretches or shrinks smoothly), and never later than that.
        """
        elapsed = now - self._fit_started
        done = self.current_epoch + 1
        budget = self.cfg.time_limit_s - after_training_reserve_s(self.cfg.time_limit_s, self.val_s) - elapsed
        fits = done + max(0, int(budget // (epoch_s * PLAN_MARGIN)))
        fits = min(fits, self.cfg.max_epochs)
        if fits != self.trainer.fit_loop.max_epochs:
            self.trainer.fit_loop.max_epochs = fits
            self.plan["total"] = max(1, fits * self.steps_per_epoch)
        self.planned_epochs = fits


def after_training_reserve_s(limit_s: float, val_s: float) -> float:
    """Seconds of a --time-limit kept for what follows the last epoch: reloading the best weights,
    one more pass over validation, thresholds, bootstrap intervals and writing the bundle.

    Measured, not a flat share: it was 5% of the limit (27 s of a 10-minute Fashion-MNIST run) while
    that work took 1.2 s there (5,000 validation images at 1 s a pass); the slack, floored to whole
    epochs, left almost two epochs of the budget unused. Two validation passes + 2 s + 1% of the
    limit covers slow disks and large validation sets, and never more than the 5% it was.

    >>> after_training_reserve_s(544.0, 1.0)
    9.44
    >>> after_training_reserve_s(544.0, 60.0)
    27.2
    """
    return round(min(0.05 * limit_s, 2.0 + 2.0 * val_s + 0.01 * limit_s), 2)


def monitor_key(labels: LabelSpace, cfg: TrainConfig) -> str:

    return cfg.monitor or MONITOR_DEFAULT[labels.task]


class HistoryWriter(Callback):
    """Writes history.csv (one row per epoch) after every validation, atomically."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        self.start = time.monotonic()

    def load_existing(self) -> None:
        if self.path.is_file():  # resuming: keep the epochs already trained
            with self.path.open(newline="") as f:
                self.rows = list(csv.DictReader(f))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: LitClassifier) -> None:

        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        val_loss = trainer.callback_metrics.get("val_loss")
        row = {"epoch": trainer.current_epoch + 1, "train_loss": round(pl_module.train_loss_epoch(), 6),
               "val_loss": round(float(val_loss), 6) if val_loss is not None else "",
               **{k: round(v, 6) for k, v in pl_module.last_val.items()},
               **{k: round(v, 6) for k, v in pl_module.last_train.items()},
               "lr": f"{lr:.3g}", "elapsed_s": round(time.monotonic() - self.start, 1)}
        self.rows = [r for r in self.rows if int(r["epoch"]) < row["epoch"]] + [row]
        header = list(dict.fromkeys(k for r in self.rows for k in r))
        write_csv(self.path, header, [[r.get(k, "") for k in header] for r in self.rows])


class EpochLine(Callback):
    """One plain line per epoch on stdout (epoch, losses, monitored metric, elapsed) for logs and pipes."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: LitClassifier) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        val_loss = trainer.callback_metrics.get("val_loss")
        monitored = pl_module.last_val.get(pl_module.monitor)
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                 f"train_loss {pl_module.train_loss_epoch():.4f}"]
        if val_loss is not None:
            parts.append(f"val_loss {float(val_loss):.4f}")
        if monitored is not None:
            parts.append(f"val_{pl_module.monitor} {monitored:.4f}")
        parts.append(f"elapsed {time.monotonic() - self.start:.1f}s")
        print("  ".join(parts), flush=True)


class EpochMetrics(Callback):
    """Hands the per-epoch values Lightning does not log itself to the --logger loggers."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: LitClassifier) -> None:
        epoch_metrics(trainer, pl_module)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically (temp file + rename) and read back without unpickling code."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:

        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        atomic_write_bytes(Path(path), buf.getvalue())

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return load_checkpoint(path)


def load_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True: tensors and plain containers only, never arbitrary objects."""

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise BundleError(f"{path}: cannot be loaded as a plain checkpoint ({str(e).splitlines()[0][:200]}); "
                          "labelwise only loads checkpoints that contain tensors and plain values. "
                          "Delete the checkpoints/ folder to start over") from None


def build_trainer(cfg: TrainConfig, run_dir: Path, monitor: str, history: HistoryWriter,
                  progress: bool = True) -> tuple[L.Trainer, ModelCheckpoint]:
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=f"val_{monitor}",
                           mode="max" if higher_is_better(monitor) else "min", save_last=False,
                           save_top_k=1, enable_version_counter=False)
    # last.ckpt every epoch, for --resume. Not ModelCheckpoint(save_last=True): Lightning 2.6 writes that one
    # only in epochs where the monitored metric improved, so a crash after a flat epoch lost it. Listed after
    # `ckpt`, so it runs after it and stores the best-so-far state of this epoch.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    callbacks: list[Callback] = [ckpt, last, history, StopOnSignal()]  # Ctrl-C / SIGTERM: stop at the next batch
    if cfg.early_stopping:
        callbacks.append(EarlyStoppingAfterUnfreeze(cfg.freeze_epochs, monitor=f"val_{monitor}",
                                                    patience=cfg.early_stopping,
                                                    mode="max" if higher_is_better(monitor) else "min"))
    # stdout not a terminal (CI log, nohup, a pipe): one plain line per epoch instead of a progress bar
    plain = progress and not sys.stdout.isatty()
    if plain:
        callbacks.append(EpochLine())
    loggers = build_loggers(cfg, run_dir)  # --logger: Lightning's CSV / TensorBoard / MLflow loggers
    if loggers:
        callbacks.append(EpochMetrics())
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices, logger=loggers or False,
        strategy=_strategy(cfg), num_nodes=cfg.num_nodes, plugins=[AtomicCheckpointIO()],
        callbacks=callbacks, enable_model_summary=False, enable_progress_bar=progress and not plain,
        num_sanity_val_steps=0, deterministic=False, default_root_dir=str(run_dir),
        max_time=timedelta(seconds=cfg.time_limit_s) if cfg.time_limit_s else None,
        log_every_n_steps=10, gradient_clip_val=cfg.grad_clip, precision=_lightning_precision(cfg.precision),
    )
    return trainer, ckpt


class EarlyStoppingAfterUnfreeze(EarlyStopping):
    """Early stopping that starts counting once the backbone trains (after --freeze-epochs): head-only
    epochs neither set the best score nor use up the patience, so a run cannot stop before the
    backbone was ever trained."""

    def __init__(self, freeze_epochs: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.freeze_epochs = freeze_epochs

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        if trainer.current_epoch < self.freeze_epochs:
            return
        super()._run_early_stopping_check(trainer)


def _strategy(cfg: TrainConfig) -> str:
    """cfg.distributed, except that DDP under --freeze-epochs must expect parameters without gradients: the
    model is wrapped with its whole backbone trainable, and the frozen first epochs leave it out of the loss
    (plain DDP stops at the second step: "parameters that were not used in producing the loss")."""
    name = cfg.distributed
    if cfg.freeze_epochs and name in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook"):
        return f"{name}_find_unused_parameters_true"
    return name


def _lightning_precision(precision: str) -> str:
    return "32-true" if precision in ("32", "auto") else precision  # auto is resolved in training.prepare
