"""--init-from RUN: start a new run from an earlier run's weights (seed 001's second round).

The backbone always comes along; the head too when the labels are the same (same task, same names,
in any order: its rows are re-ordered to the new label order), else the new run gets a fresh head
and a note says so. The new run records where it started: ``model.init_from`` in config.yaml (an
absolute path) and ``run.init_from`` in metrics.json. Weights are read from model.safetensors only.

>>> labelwise.train("more_data/", "runs/round2", init_from="runs/round1")    # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from labelwise.config import RunConfig
from labelwise.data.band_scaling import format_bands, parse_bands
from labelwise.errors import ConfigError
from labelwise.labels import LabelSpace
from labelwise.models.bundle import ModelMeta, read_meta, read_weights


def _meta_of(run: str) -> ModelMeta:
    meta = read_meta(Path(run))
    if meta.backbone == "ensemble":
        raise ConfigError(f"--init-from {run}: an ensemble bundle (k-fold run); start from one model, "
                          f"e.g. --init-from {Path(run) / 'fold_1'}")
    return meta


def resolve_init_from(cfg: RunConfig) -> tuple[RunConfig, list[str]]:
    """With --init-from RUN: the run's backbone, fusion, channels and bands (--bands) where the new run left them
    to choose (auto / unset), fine-tuning (a linear probe would throw the weights away); a conflicting explicit
    choice is a ConfigError. Other --bands of the same count are allowed (the weights fit), with a note. Returns
    the config (init_from made absolute) and notes for the run record."""
    run = cfg.model.init_from
    if not run:
        return cfg, []
    meta = _meta_of(run)
    mcfg, dcfg, tcfg = cfg.model, cfg.data, cfg.train
    if mcfg.backbone not in ("auto", meta.backbone):
        raise ConfigError(f"--init-from {run}: that run trained backbone {meta.backbone!r}, not --model "
                          f"{mcfg.backbone!r}; leave --model out (or pass --model {meta.backbone})")
    if mcfg.fusion != meta.fusion and mcfg.fusion != "early":
        raise ConfigError(f"--init-from {run}: that run used --fusion {meta.fusion}, not {mcfg.fusion}")
    if dcfg.channels not in (None, meta.in_chans):
        raise ConfigError(f"--init-from {run}: that run's model takes {meta.in_chans} channels, not --channels "
                          f"{dcfg.channels}")
    bands, band_note = _bands(run, meta, parse_bands(dcfg.bands))
    if tcfg.strategy == "linear-probe":
        raise ConfigError(f"--init-from {run} with --strategy linear-probe: a linear probe uses the ImageNet "
                          "backbone and would ignore the run's weights; use --strategy finetune")
    notes = [f"--init-from {run}: backbone {meta.backbone} ({meta.in_chans} channels) starts from that run's "
             "weights and is fine-tuned"] + ([band_note] if band_note else [])
    cfg = cfg.with_(model=replace(mcfg, backbone=meta.backbone, fusion=meta.fusion,
                                  init_from=str(Path(run).resolve())),
                    data=replace(dcfg, channels=meta.in_chans, bands=format_bands(bands)),
                    train=replace(tcfg, strategy="finetune"))
    return cfg, notes


def _bands(run: str, meta: ModelMeta, asked: tuple[int, ...] | None) -> tuple[tuple[int, ...] | None, str | None]:
    """The bands the new run sees: --bands as given (if their count fits the run's weights), else the run's."""
    had = meta.pixel_spec.bands
    if asked is None:
        if had is None:
            return None, None
        return had, (f"--init-from {run}: --bands {format_bands(had)} as in that run (its model takes these "
                     f"{len(had)} band{'s' if len(had) != 1 else ''}); pass --bands to choose others")
    if len(asked) != meta.in_chans:
        was = (f"--bands {format_bands(had)}" if had is not None else
               "every band of its images, --bands not given")
        raise ConfigError(f"--init-from {run}: that run's model takes {meta.in_chans} channel"
                          f"{'s' if meta.in_chans != 1 else ''} ({was}), not the {len(asked)} of --bands "
                          f"{format_bands(asked)}; leave --bands out to use that run's, or give {meta.in_chans} bands")
    if asked != had:
        was = f"--bands {format_bands(had)}" if had is not None else "every band"
        return asked, (f"--init-from {run}: that run saw {was}; this one sees --bands {format_bands(asked)} "
                       f"(same count, so the weights fit, but each channel's meaning may differ)")
    return asked, None


def labels_match(new: LabelSpace, old: LabelSpace) -> bool:
    return new.task == old.task and sorted(new.names) == sorted(old.names)


def init_record(run: str | None, labels: LabelSpace) -> dict[str, Any] | None:
    """What metrics.json's run section says about the start: the run, whether its head came along, and why."""
    if not run:
        return None
    meta = read_meta(Path(run))
    head = labels_match(labels, meta.labels)
    why = ("same labels: backbone and head" if head else
           f"labels differ ({meta.labels.task} {list(meta.labels.names)} there, {labels.task} "
           f"{list(labels.names)} here): backbone only, a new head")
    return {"run": str(Path(run).resolve()), "head": head, "note": why, "backbone": meta.backbone}


def load_init_weights(model: torch.nn.Module, run: str, labels: LabelSpace) -> dict[str, Any]:
    """Copy RUN's weights into ``model`` (a Classifier): everything but the head, and the head when the labels
    match (rows re-ordered to ``labels``). Returns the record of init_record()."""
    meta = _meta_of(run)
    state = read_weights(Path(run))
    head_keys = {k for k in state if k.startswith("head.")}
    body = {k: v for k, v in state.items() if k not in head_keys}
    own = model.state_dict()
    wrong = [k for k, v in body.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if not k.startswith("head.") and k not in body]
    if wrong or missing:
        raise ConfigError(f"--init-from {run}: its weights do not fit this model ({meta.backbone}, "
                          f"{model.in_chans} channels): {(wrong or missing)[0]!r} differs; start from a run with "
                          "the same backbone and channels")
    record = init_record(run, labels)
    if record["head"]:
        order = torch.tensor([meta.labels.names.index(n) for n in labels.names])
        body["head.weight"] = state["head.weight"][order]
        body["head.bias"] = state["head.bias"][order]
    with torch.no_grad():
        model.load_state_dict(body, strict=False)
    return record
