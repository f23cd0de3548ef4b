"""Where each choice option of the config schema takes its choices from, and the one check of a whole config.

Every registry listed here is light (no torch at import), so the CLI can show the choices in --help.
"""
from __future__ import annotations

from labelwise.config import RunConfig, TrainConfig, check_choices, field_choices
from labelwise.data.augment_presets import AUGMENT_PRESETS
from labelwise.data.sources import FORMATS
from labelwise.errors import ConfigError, check_choice
from labelwise.registry import Registry
from labelwise.training.loggers import parse_loggers
from labelwise.training.losses import LOSSES
from labelwise.training.optim import OPTIMIZERS, SCHEDULERS

REGISTRIES: dict[str, Registry] = {"loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
                                   "augment": AUGMENT_PRESETS, "format": FORMATS}


def registry_of(name: str) -> Registry:
    return REGISTRIES[name]


LIGHTNING_STRATEGIES = ("ddp", "fsdp", "deepspeed", "single_device", "dp")


def check_strategy(strategy: str) -> str:
    """--strategy is how to train; a Lightning strategy name there gets pointed to --distributed."""
    if strategy.startswith(LIGHTNING_STRATEGIES):
        raise ConfigError(f"--strategy {strategy!r}: --strategy picks how to train (finetune, linear-probe, auto); "
                          f"for several processes or machines use --distributed {strategy}")
    return check_choice("--strategy", strategy, field_choices(TrainConfig, "strategy"))


def check_options(cfg: RunConfig) -> RunConfig:
    """Every choice option against its registry or fixed choices (with a did-you-mean), before any work starts."""
    check_strategy(cfg.train.strategy)
    check_choices(cfg, {name: reg.names() for name, reg in REGISTRIES.items()})
    parse_loggers(cfg.train.logger)  # unknown names and missing packages, before any work
    return cfg
