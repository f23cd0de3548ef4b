"""Optimizers and LR schedules: registries of name -> factory (torch is imported inside, so the CLI stays fast).

Adding an optimizer is one function and one ``@OPTIMIZERS.register(name, help, lr=default)``; a schedule is one
function ``(ctx) -> Lightning lr_scheduler dict`` and one ``@SCHEDULERS.register``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from labelwise.config import TrainConfig
from labelwise.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")

PLAN_EPOCHS = 3  # --time-limit: re-plan the schedule after each of the first 3 epochs of a fit
PLAN_MARGIN = 1.03  # epochs vary by a few percent; running over would hit the hard stop mid-epoch


@OPTIMIZERS.register("adamw", "AdamW, decoupled weight decay (default lr 2e-3)", lr=2e-3, weight_decay=0.01)
def _adamw(groups: list[dict], cfg: TrainConfig):
    import torch

    return torch.optim.AdamW(groups, lr=cfg.lr)


@OPTIMIZERS.register("adam", "Adam, weight decay as an L2 term in the gradient (default lr 2e-3)", lr=2e-3,
                    weight_decay=0.01)
def _adam(groups: list[dict], cfg: TrainConfig):
    import torch

    return torch.optim.Adam(groups, lr=cfg.lr)


@OPTIMIZERS.register("sgd", "SGD with --momentum, Nesterov unless --no-nesterov (default lr 2e-3, 0.2 for "
                    "cnn-small; weight decay 5e-4)", lr=2e-3, weight_decay=5e-4)
def _sgd(groups: list[dict], cfg: TrainConfig):
    import torch

    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


@OPTIMIZERS.register("rmsprop", "RMSprop with --momentum (default lr 2e-3)", lr=2e-3, weight_decay=0.01)
def _rmsprop(groups: list[dict], cfg: TrainConfig):
    import torch

    return torch.optim.RMSprop(groups, lr=cfg.lr, momentum=cfg.momentum)


@OPTIMIZERS.register("adadelta", "Adadelta (default lr 1.0, its usual setting)", lr=1.0, weight_decay=0.01)
def _adadelta(groups: list[dict], cfg: TrainConfig):
    import torch

    return torch.optim.Adadelta(groups, lr=cfg.lr)


def default_lr(optimizer: str) -> float:
    """The optimizer's peak learning rate, used when --lr is not given (and the backbone has no recipe for it)."""
    return float(OPTIMIZERS.entry(optimizer).extra["lr"])


def default_weight_decay(optimizer: str) -> float:
    """The optimizer's weight decay, used when --weight-decay is not given."""
    return float(OPTIMIZERS.entry(optimizer).extra["weight_decay"])


def resolve_recipe(cfg: TrainConfig, recipe_optimizer: str, recipe_lr: float | None) -> TrainConfig:
    """--optimizer auto -> the backbone's; --lr unset -> the backbone's recipe lr when its optimizer is used, else the
    optimizer's default; --weight-decay unset -> the optimizer's."""
    optimizer = recipe_optimizer if cfg.optimizer == "auto" else cfg.optimizer
    lr = cfg.lr
    if lr is None:
        lr = recipe_lr if recipe_lr is not None and optimizer == recipe_optimizer else default_lr(optimizer)
    wd = cfg.weight_decay if cfg.weight_decay is not None else default_weight_decay(optimizer)
    return replace(cfg, optimizer=optimizer, lr=lr, weight_decay=wd)


@dataclass
class ScheduleContext:
    opt: Any  # torch.optim.Optimizer
    groups: list[dict]
    cfg: TrainConfig
    steps_per_epoch: int
    monitor: str
    plan: dict  # plan["total"]: steps in the schedule; --time-limit may shorten it while training
    warmup: int  # steps


def _lambda_schedule(ctx: ScheduleContext, decay) -> dict:
    import torch

    def factor(step: int) -> float:
        if step < ctx.warmup:  # linear warm-up
            return (step + 1) / ctx.warmup
        return decay(step)

    sched = torch.optim.lr_scheduler.LambdaLR(ctx.opt, factor)
    return {"optimizer": ctx.opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@SCHEDULERS.register("cosine", "warm-up, then cosine decay to 1% of the peak")
def _cosine(ctx: ScheduleContext) -> dict:
    def decay(step: int) -> float:
        progress = min(1.0, (step - ctx.warmup) / max(1, ctx.plan["total"] - ctx.warmup))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return _lambda_schedule(ctx, decay)


@SCHEDULERS.register("onecycle", "one-cycle: up then down, with momentum cycling")
def _onecycle(ctx: ScheduleContext) -> dict:
    import torch

    # momentum cycling needs an optimizer with momentum or betas (Adadelta has neither)
    cycle = "betas" in ctx.opt.defaults or ctx.opt.defaults.get("momentum", 0) > 0
    total = ctx.plan["total"]
    sched = torch.optim.lr_scheduler.OneCycleLR(ctx.opt, max_lr=[g["lr"] for g in ctx.groups], total_steps=total,
                                                pct_start=max(0.05, ctx.warmup / total) if ctx.warmup else 0.25,
                                                cycle_momentum=cycle)
    return {"optimizer": ctx.opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@SCHEDULERS.register("step", "warm-up, then x --gamma every --step-size epochs")
def _step(ctx: ScheduleContext) -> dict:
    every = max(1, ctx.cfg.step_size * ctx.steps_per_epoch)
    return _lambda_schedule(ctx, lambda step: ctx.cfg.gamma ** (step // every))


@SCHEDULERS.register("plateau", "x --gamma after --step-size epochs without improvement")
def _plateau(ctx: ScheduleContext) -> dict:
    import torch

    from labelwise.evaluation.metrics import higher_is_better  # numpy: kept out of `labelwise --help`

    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        ctx.opt, mode="max" if higher_is_better(ctx.monitor) else "min", factor=ctx.cfg.gamma,
        patience=ctx.cfg.step_size)
    return {"optimizer": ctx.opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch",
                                                   "monitor": f"val_{ctx.monitor}", "strict": False}}


@SCHEDULERS.register("constant", "warm-up, then the peak rate throughout")
def _constant(ctx: ScheduleContext) -> dict:
    return _lambda_schedule(ctx, lambda step: 1.0)


def build_optimizer(model: Any, cfg: TrainConfig, steps_per_epoch: int, monitor: str, plan: dict | None = None) -> dict:
    """Optimizer with param groups (head / backbone x decay / no decay) and its LR schedule.

    With --freeze-epochs the backbone gets --lr x backbone_lr_mult (discriminative LR, as fastai's
    fine_tune); norms and biases are never weight-decayed. ``cfg.lr`` is resolved (see training.prepare).
    """
    if cfg.optimizer == "auto" or cfg.lr is None or cfg.weight_decay is None:
        cfg = resolve_recipe(cfg, "adamw", None)  # unresolved (a TrainConfig built by hand): the optimizer's defaults
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
    opt = OPTIMIZERS.get(cfg.optimizer.lower())(groups, cfg)
    plan = plan if plan is not None else {}
    plan.setdefault("total", max(1, cfg.max_epochs * steps_per_epoch))
    total = plan["total"]
    warmup = min(total - 1, int(cfg.warmup_epochs * steps_per_epoch)) if cfg.warmup_epochs > 0 else 0
    ctx = ScheduleContext(opt, groups, cfg, steps_per_epoch, monitor, plan, warmup)
    return SCHEDULERS.get(cfg.scheduler.lower())(ctx)
