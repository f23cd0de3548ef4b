"""Linear probe: embed every image once with the frozen pretrained backbone, then train the head alone.

Fine-tuning runs the whole network forward and backward on every image in every epoch; a linear
probe runs the backbone forward once per image (no augmentation, eval mode) and then trains the
linear head on the cached features, which takes seconds on a CPU. On small data sets a probe is
often as good as fine-tuning, and it is always a strong baseline.

``fit_probe`` returns the same ``Fitted`` as ``training.fit``, so ``training.finalize`` tunes
thresholds, scores and writes the bundle exactly as for a fine-tuned model: the bundle is an
ordinary Classifier (pretrained backbone + the trained head) that predict/evaluate/export accept.

How the head is trained (``fit_head``): the features are standardised (mean/std over the training
images); the head starts at zero weights and the label priors, and is trained with AdamW in
mini-batches with a cosine decay on the run's loss (``--loss``, ``--class-weights``,
``--label-smoothing``, ``--weight-decay``); after every epoch the validation monitor is measured and
the best epoch wins. The standardisation is then folded into the weights, so ``head(raw_features)``
gives the standardised model's logits. (A full-batch L-BFGS path over L2 strengths was as accurate
within noise on Fashion-MNIST and mosaics, and 5-30x slower.)

>>> fitted = fit_probe(prep, train_idx, val_idx, Path("runs/probe"))     # doctest: +SKIP
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from labelwise.errors import ConfigError
from labelwise.evaluation.metrics import (
    MONITOR_DEFAULT,
    compute_metrics,
    higher_is_better,
    summary_of,
)
from labelwise.io import write_csv
from labelwise.labels import LabelSpace
from labelwise.models.classifier import Classifier
from labelwise.progress import progress_bar
from labelwise.training.loss_modules import class_weights
from labelwise.training.losses import build_loss
from labelwise.training.prepare import Fitted, Prepared, use_pretrained

log = logging.getLogger("labelwise")

def _device_of(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def embed(model: torch.nn.Module, pixels: np.ndarray, batch_size: int = 256, progress: bool = True,
          description: str = "embedding", index: np.ndarray | None = None) -> np.ndarray:
    """uint8 images (N, C, S, S) -> pooled backbone features (N, F) float32, in eval mode.

    Runs on the model's device, one batch at a time (memory bounded by ``batch_size`` images: only
    a batch is ever copied and converted to floats), channels-last as the predictor does.
    ``index`` embeds only those rows of ``pixels``, in that order (no copy of the selection).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model.eval()
    device = _device_of(model)
    n = len(pixels) if index is None else len(index)
    out: np.ndarray | None = None
    with torch.inference_mode(), progress_bar(n, description, progress) as bar:
        task = bar.add_task(description, total=n)
        for start in range(0, n, batch_size):
            rows = pixels[start:start + batch_size] if index is None else pixels[index[start:start + batch_size]]
            rows = np.ascontiguousarray(rows)
            if not rows.flags.writeable:  # a read-only (cached, memory-mapped) array: copy the batch only
                rows = rows.copy()
            x = torch.from_numpy(rows).to(device)
            x = x.float().div_(255.0).contiguous(memory_format=torch.channels_last)
            feats = model.features(x).float().cpu().numpy()
            if out is None:
                out = np.empty((n, feats.shape[1]), dtype=np.float32)
            out[start:start + len(feats)] = feats
            bar.advance(task, len(feats))
    if out is None:  # no images: the feature width from the head
        width = model.head.in_features if hasattr(model, "head") else 0
        return np.zeros((0, width), dtype=np.float32)
    return out


# Head training defaults: AdamW on standardised features, mini-batches, cosine decay, best epoch kept.
# An epoch over cached features costs milliseconds, so many epochs are cheap.
HEAD_EPOCHS = 50
HEAD_LR = 1e-3
HEAD_BATCH = 256
_MIN_STEPS_PER_EPOCH = 10  # small data sets get smaller batches (down to 16), so the head still takes enough steps
_MIN_BATCH = 16


def _batch_size(n: int, batch_size: int) -> int:
    return int(max(1, min(batch_size, max(_MIN_BATCH, math.ceil(n / _MIN_STEPS_PER_EPOCH)))))


def _prior_bias(train_y: np.ndarray, multilabel: bool) -> np.ndarray:
    """The label priors as logits: log-odds (multi-label) or log-frequency (multi-class), as
    ``training.init_head_bias`` sets them."""
    freq = np.clip(np.asarray(train_y, dtype=np.float64).mean(0), 1e-4, 1 - 1e-4)
    return np.log(freq / (1 - freq)) if multilabel else np.log(freq)


def _standardise(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over the training features (float64). A constant feature gets
    std 1: it carries nothing, and dividing by ~0 would blow up its value on other images."""
    x = np.asarray(train_x, dtype=np.float64)
    mu = x.mean(0)
    sigma = x.std(0)
    sigma[~(sigma > 1e-6 * np.maximum(1.0, np.abs(mu)))] = 1.0
    return mu, sigma


def fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
             multilabel: bool, loss_name: str = "auto", label_smoothing: float = 0.0,
             class_weights: np.ndarray | torch.Tensor | None = None, weight_decay: float = 0.01, seed: int = 0,
             max_epochs: int = HEAD_EPOCHS, time_limit_s: float | None = None, monitor: str | None = None,
             lr: float = HEAD_LR, batch_size: int = HEAD_BATCH, patience: int | None = None,
             labels: LabelSpace | None = None) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, Any]], int]:
    """Train a linear head on features; return (weight (K, F), bias (K,), history rows, best epoch).

    ``train_x`` / ``val_x``: float features (N, F); ``train_y`` / ``val_y``: multi-hot (N, K).
    The loss is the run's (``build_loss(loss_name, ...)``; ``class_weights`` is the pos_weight of a
    multi-label loss or the class weight of the cross-entropy). Features are standardised with the
    training mean/std; the head starts at zero weights and the label-prior bias and is trained with
    AdamW (``lr``, decoupled ``weight_decay`` on the weights, mini-batches of ``batch_size``, cosine
    decay over ``max_epochs``). After every epoch the validation ``monitor`` (a key of
    ``metrics.compute_metrics``, e.g. "map" or "accuracy", or "loss") is measured and the best epoch's
    weights are returned (ties: the lower validation loss), with the standardisation folded in:
    ``features @ weight.T + bias`` gives the trained logits on raw features. ``time_limit_s`` stops
    early, ``patience`` stops after that many epochs without improvement. Same inputs and ``seed``,
    same result.
    """

    started = time.monotonic()
    task = "multilabel" if multilabel else "multiclass"
    monitor = monitor or MONITOR_DEFAULT[task]
    train_y = np.asarray(train_y, dtype=np.float32)
    val_y = np.asarray(val_y, dtype=np.float32)
    if train_x.ndim != 2 or len(train_x) != len(train_y) or len(train_x) == 0:
        raise ValueError(f"need non-empty train features (N, F) and targets (N, K), got {train_x.shape} and "
                         f"{train_y.shape}")
    if len(val_x) != len(val_y) or (len(val_x) and val_x.shape[1] != train_x.shape[1]):
        raise ValueError(f"val features {val_x.shape} do not match targets {val_y.shape} / train features")
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
    n, f = train_x.shape
    k = train_y.shape[1]
    labels = labels if labels is not None else LabelSpace(tuple(f"label_{i}" for i in range(k)), task)

    weights = None if class_weights is None else torch.as_tensor(np.asarray(class_weights), dtype=torch.float32)
    loss_fn = build_loss(loss_name, task, label_smoothing=label_smoothing,
                         pos_weight=weights if multilabel else None,
                         class_weight=None if multilabel else weights)
    mu, sigma = _standardise(train_x)
    mu32, sigma32 = torch.from_numpy(mu.astype(np.float32)), torch.from_numpy(sigma.astype(np.float32))
    xt = (torch.from_numpy(np.asarray(train_x, dtype=np.float32)) - mu32) / sigma32
    xv = (torch.from_numpy(np.asarray(val_x, dtype=np.float32)) - mu32) / sigma32
    yt, yv = torch.from_numpy(train_y), torch.from_numpy(val_y)

    gen = torch.Generator().manual_seed(int(seed))
    head = torch.nn.Linear(f, k)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.from_numpy(_prior_bias(train_y, multilabel).astype(np.float32)))
    opt = torch.optim.AdamW([{"params": [head.weight], "weight_decay": weight_decay},
                             {"params": [head.bias], "weight_decay": 0.0}], lr=lr)
    bs = _batch_size(n, batch_size)
    steps_per_epoch = math.ceil(n / bs)
    total = max_epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(  # cosine decay to 1% of the peak, as the engine's
        opt, lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))

    # Tiny matrix products: one thread is as fast, and several fight other processes for the cores
    threads = torch.get_num_threads()
    if bs * f * k < 50_000_000:
        torch.set_num_threads(1)
    try:
        history, best_epoch, best_state = _train_head(
            head, opt, sched, loss_fn, xt, yt, xv, yv, val_y, labels, gen, bs, max_epochs, monitor, patience,
            time_limit_s, started, multilabel)
    finally:
        torch.set_num_threads(threads)

    w, b = best_state
    # fold the standardisation in: W (x - mu) / sigma + b = (W / sigma) x + (b - (W / sigma) mu)
    w64 = w.double().numpy() / sigma[None, :]
    b64 = b.double().numpy() - w64 @ mu
    return (torch.from_numpy(w64.astype(np.float32)), torch.from_numpy(b64.astype(np.float32)), history,
            best_epoch)


def _embed_device(accelerator: str) -> torch.device:
    """Where to embed: the GPU when one is there and --accelerator allows it, else the CPU."""
    if str(accelerator).lower() in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _embed_on(model: torch.nn.Module, device: torch.device, pixels: np.ndarray,
              parts: list[tuple[np.ndarray, str]], progress: bool) -> list[np.ndarray]:
    """Embed the rows of each (index, description) on ``device``; the model ends back on the CPU. On a
    GPU, TF32 convolutions are off so the features match the CPU model (the bundle) to float precision."""
    if device.type != "cuda":
        return [embed(model, pixels, progress=progress, description=d, index=i) for i, d in parts]
    tf32 = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = False
        model.to(device)
        return [embed(model, pixels, progress=progress, description=d, index=i) for i, d in parts]
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
        model.to("cpu")


def fit_probe(prep: Prepared, train_idx: np.ndarray, val_idx: np.ndarray, run_dir: Path, *,
              progress: bool = True) -> Fitted:
    """Linear probe for one split: ``training.fit``'s counterpart for ``--strategy linear-probe``.

    Builds the Classifier as ``training.fit`` does (pretrained backbone), embeds the training and
    validation images once (eval mode, no augmentation), trains the head on the features
    (``fit_head``) and puts it into the model. Writes RUN/config.yaml and RUN/history.csv (one row
    per head epoch) and returns a ``training.Fitted`` for ``training.finalize``. The backbone's
    weights and BatchNorm statistics are left exactly as pretrained.
    """
    import lightning.pytorch as L


    cfg, labels, y = prep.cfg, prep.labels, prep.samples.targets
    mcfg, tcfg = cfg.model, cfg.train
    if not use_pretrained(mcfg) and not mcfg.weights:
        raise ConfigError(
            f"a linear probe trains only the head on the features of a frozen backbone, but backbone "
            f"{mcfg.backbone!r} is not pretrained here (random features are pointless to probe). Use a pretrained "
            "backbone (--model efficientnet_lite0, whose ImageNet weights ship offline; or --weights PATH), "
            "or --strategy finetune to train the whole network")
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    started = time.monotonic()
    L.seed_everything(tcfg.seed, workers=True, verbose=False)
    model = Classifier(mcfg.backbone, len(labels), in_chans=cfg.data.channels, pretrained=use_pretrained(mcfg),
                       weights=mcfg.weights, drop_rate=mcfg.drop_rate, fusion=mcfg.fusion)
    model = model.to(memory_format=torch.channels_last)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")

    device = _embed_device(tcfg.accelerator)
    log.info("linear probe: embedding %s images with the frozen %s backbone (%s)",
             f"{len(train_idx) + len(val_idx):,}", mcfg.backbone, device.type)
    t0 = time.monotonic()
    train_x, val_x = _embed_on(model, device, prep.pixels, [(train_idx, "embedding (train)"),
                                                            (val_idx, "embedding (val)")], progress)
    embed_s = time.monotonic() - t0

    weights = class_weights(y[train_idx], labels.task) if tcfg.class_weights == "auto" else None
    budget = None if not tcfg.time_limit_s else max(0.0, tcfg.time_limit_s * 0.95 - (time.monotonic() - started))
    t1 = time.monotonic()
    w, b, history, best_epoch = fit_head(
        train_x, y[train_idx], val_x, y[val_idx], multilabel=labels.multilabel, loss_name=prep.loss_name,
        label_smoothing=tcfg.label_smoothing, class_weights=weights, weight_decay=tcfg.weight_decay,
        seed=tcfg.seed, time_limit_s=budget, monitor=prep.monitor, patience=tcfg.early_stopping, labels=labels)
    head_s = time.monotonic() - t1
    with torch.no_grad():
        model.head.weight.copy_(w)
        model.head.bias.copy_(b)
    model.eval()
    with torch.inference_mode():
        logits = model.head(torch.from_numpy(val_x))
        val_probs = (torch.sigmoid(logits) if labels.multilabel else torch.softmax(logits, 1)).float().numpy()

    # history.csv as the engine writes it; elapsed_s counts from the start (embedding included)
    for row in history:
        row["elapsed_s"] = round(float(row["elapsed_s"]) + embed_s, 1)
    header = list(dict.fromkeys(key for row in history for key in row))
    write_csv(run_dir / "history.csv", header, [[row.get(key, "") for key in header] for row in history])
    wall = time.monotonic() - started
    log.info("linear probe: embedded %s images in %.0f s; head trained in %.1f s (best epoch %d of %d)",
             f"{len(train_idx) + len(val_idx):,}", embed_s, head_s, best_epoch, len(history))
    return Fitted(model, val_probs, wall, len(history), len(history), best_epoch)


def _train_head(head, opt, sched, loss_fn, xt, yt, xv, yv, val_y, labels, gen, bs, max_epochs, monitor, patience,
                time_limit_s, started, multilabel):
    """The epoch loop of ``fit_head``: returns (history rows, best epoch, (weight, bias) at the best epoch)."""

    n = len(xt)
    higher = higher_is_better(monitor)
    best_score, best_loss, best_epoch, best_state = None, math.inf, 0, None
    history: list[dict[str, Any]] = []
    since_best = 0
    for epoch in range(1, max_epochs + 1):
        head.train()
        order = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            loss = loss_fn(head(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
        lr_now = opt.param_groups[0]["lr"]
        head.eval()
        row: dict[str, Any] = {"epoch": epoch, "train_loss": round(loss_sum / n, 6)}
        score, val_loss = math.nan, math.nan
        if len(xv):
            with torch.no_grad():
                logits = head(xv)
                val_loss = float(loss_fn(logits, yv))
                probs = (torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).numpy()
            summary = {key: float(v) for key, v in summary_of(compute_metrics(probs, val_y.astype(np.uint8),
                                                                              labels)).items() if key != "n"}
            row["val_loss"] = round(val_loss, 6)
            row.update({key: round(v, 6) for key, v in summary.items()})
            score = val_loss if monitor == "loss" else summary.get(monitor, math.nan)
        else:
            row["val_loss"] = ""
        row.update(lr=f"{lr_now:.3g}", elapsed_s=round(time.monotonic() - started, 1))
        history.append(row)
        # best epoch: the monitor, ties broken by the validation loss (a saturated accuracy of 1.0 keeps
        # improving in confidence); with no usable validation score yet, the latest epoch
        if math.isfinite(score):
            better = best_score is None or (score > best_score if higher else score < best_score) or (
                score == best_score and val_loss < best_loss)
        else:
            better = best_score is None
        if better:
            best_score = score if math.isfinite(score) else None
            best_loss = val_loss
            best_epoch = epoch
            best_state = (head.weight.detach().clone(), head.bias.detach().clone())
            since_best = 0
        else:
            since_best += 1
        if patience and since_best >= patience:
            break
        if time_limit_s is not None and time.monotonic() - started >= time_limit_s:
            break

    return history, best_epoch, best_state
