"""Where each choice option of the config schema takes its choices from, and the one check of a whole config.

Every registry listed here is light (no torch at import), so the CLI can show the choices in --help.
"""
from __future__ import annotations

from labelwise.config import RunConfig, check_choices
from labelwise.data.augment_presets import AUGMENT_PRESETS
from labelwise.data.sources import FORMATS
from labelwise.registry import Registry
from labelwise.training.losses import LOSSES
from labelwise.training.optim import OPTIMIZERS, SCHEDULERS

REGISTRIES: dict[str, Registry] = {"loss": LOSSES, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
                                   "augment": AUGMENT_PRESETS, "format": FORMATS}


def registry_of(name: str) -> Registry:
    return REGISTRIES[name]


def check_options(cfg: RunConfig) -> RunConfig:
    """Every choice option against its registry or fixed choices (with a did-you-mean), before any work starts."""
    check_choices(cfg, {name: reg.names() for name, reg in REGISTRIES.items()})
    return cfg
