"""Optimizers and LR schedules: registries of name -> factory."""
from __future__ import annotations

import math

import torch

from labelwise.config import TrainConfig
from labelwise.errors import ConfigError
from labelwise.evaluation.metrics import higher_is_better

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop", "adadelta")


SCHEDULERS = ("cosine", "onecycle", "step", "plateau", "constant")


PLAN_EPOCHS = 3  # --time-limit: re-plan the schedule after each of the first 3 epochs of a fit


PLAN_MARGIN = 1.03  # epochs vary by a few percent; running over would hit the hard stop mid-epoch


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, steps_per_epoch: int, monitor: str,
                    plan: dict | None = None) -> dict:
    """Optimizer with param groups (head / backbone x decay / no decay) and its LR schedule.

    With --freeze-epochs the backbone gets --lr x backbone_lr_mult (discriminative LR, as fastai's
    fine_tune); norms and biases are never weight-decayed.
    """
    backbone_lr = cfg.lr * (cfg.backbone_lr_mult if cfg.freeze_epochs > 0 else 1.0)
    groups = []
    head_like = [model.head] + ([model.extra] if getattr(model, "extra", None) is not None else [])
    for parts, lr in (([model.backbone], backbone_lr), (head_like, cfg.lr)):
        params = [p for part in parts for p in part.parameters()]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups += [{"params": decay, "weight_decay": cfg.weight_decay, "lr": lr},
                   {"params": no_decay, "weight_decay": 0.0, "lr": lr}]
    groups = [g for g in groups if g["params"]]
    name = cfg.optimizer.lower()
    if name == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    elif name == "adam":  # L2 penalty in the gradient, unlike AdamW's decoupled decay
        opt = torch.optim.Adam(groups, lr=cfg.lr)
    elif name == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    elif name == "rmsprop":
        opt = torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum)
    elif name == "adadelta":
        opt = torch.optim.Adadelta(groups, lr=cfg.lr)
    else:
        raise ConfigError(f"--optimizer {cfg.optimizer!r} is not known; choose one of {', '.join(OPTIMIZERS)}")

    plan = plan if plan is not None else {}
    plan.setdefault("total", max(1, cfg.max_epochs * steps_per_epoch))  # steps; --time-limit may shorten it
    total = plan["total"]
    warmup = min(total - 1, int(cfg.warmup_epochs * steps_per_epoch)) if cfg.warmup_epochs > 0 else 0
    kind = cfg.scheduler.lower()
    if kind == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max" if higher_is_better(monitor) else "min", factor=cfg.gamma, patience=cfg.step_size)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch",
                                                   "monitor": f"val_{monitor}", "strict": False}}
    if kind == "onecycle":
        # momentum cycling needs an optimizer with momentum or betas (Adadelta has neither)
        cycle = "betas" in opt.defaults or opt.defaults.get("momentum", 0) > 0
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=total,
                                                    pct_start=max(0.05, warmup / total) if warmup else 0.25,
                                                    cycle_momentum=cycle)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
    if kind not in ("cosine", "step", "constant"):
        raise ConfigError(f"--scheduler {cfg.scheduler!r} is not known; choose one of {', '.join(SCHEDULERS)}")

    def factor(step: int) -> float:
        if step < warmup:  # linear warm-up
            return (step + 1) / warmup
        if kind == "cosine":  # cosine decay to 1% of the peak
            progress = min(1.0, (step - warmup) / max(1, plan["total"] - warmup))
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
        if kind == "step":
            return cfg.gamma ** (step // max(1, cfg.step_size * steps_per_epoch))
        return 1.0

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


