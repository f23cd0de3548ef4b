"""The Run section: what was trained, on what, and how — every option that shaped the run, read
from the run's config.yaml (resolved values: `auto` and unset options as training chose them) and
shown in the order and with the help of the one option schema (labelwise/config.py)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from labelwise.config import SECTIONS, flag_of
from labelwise.models.facts import epochs_text, pixel_spec_text, planned_epochs
from labelwise.report.analysis import readable
from labelwise.report.format import duration, split_counts

if TYPE_CHECKING:
    from labelwise.report.builder import Builder

# Options that only say where and how fast a run went, not what it learned: listed apart.
MACHINE = {"workers", "cache", "accelerator", "devices", "distributed", "num_nodes", "strict", "max_pixels"}
SECTION_TITLES = {"data": "data options", "model": "model options", "train": "training options"}


def run_section(b: Builder) -> dict[str, Any]:
    run, cfg = b.run, b.run.config
    r = run.metrics.get("run") or {}
    meta = run.meta
    rows = [
        ("task", f"{b.task} · {len(b.names)} labels"),
        ("backbone", f"{meta.backbone}" + (f" ({len(meta.members)} × {meta.members[0]})" if getattr(meta, "members", None)
                                           else "") + (" · ImageNet-pretrained" if r.get("pretrained") else "")),
        ("input", f"{meta.image_size}×{meta.image_size} px, {meta.in_chans} channel{'s' if meta.in_chans != 1 else ''}"),
    ]
    if bands := pixel_spec_text(meta.pixel_spec):
        rows.append(("bands", bands))
    rows += [
        ("images", split_counts(r, len(run.val))),
        ("epochs", _epochs(r, run.metrics, cfg)),
        ("wall time", duration(r.get("wall_time_s"))),
    ]
    if r.get("folds"):
        rows.append(("cross-validation", (f"{r['folds']} folds: one model per fold, every image scored by the model "
                                          "that did not train on it; the bundle is their ensemble")))
    options = option_rows(cfg)
    rows.append(("seed", str(meta.seed)))
    versions = " · ".join(f"{k} {v}" for k, v in (meta.versions or {}).items())
    rows.append(("versions", versions or "?"))
    rows.append(("run directory", str(run.run_dir.resolve())))
    note = "" if cfg else "config.yaml is missing from the run directory: the options are not known."
    return {"rows": rows, "options": options, "note": note}


def option_rows(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One group per config section: (option flag, value as config.yaml holds it, help) for every field of
    the schema, in schema order; keys config.yaml holds that the schema does not know are listed last."""
    from dataclasses import fields

    groups = []
    for section, cls in SECTIONS.items():
        values = cfg.get(section) or {}
        if not isinstance(values, dict) or not values:
            continue
        known = {f.name: f for f in fields(cls)}
        rows, machine = [], []
        for name, f in known.items():
            if name not in values:
                continue
            row = {"flag": flag_of(f), "value": show(values[name]), "help": f.metadata.get("help", ""),
                   "default": values[name] == f.default}
            (machine if name in MACHINE else rows).append(row)
        rows += [{"flag": k, "value": show(v), "help": "", "default": False} for k, v in values.items() if k not in known]
        groups.append({"title": SECTION_TITLES.get(section, section), "rows": rows, "machine": machine})
    return groups


def show(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _epochs(r: dict[str, Any], metrics: dict[str, Any], cfg: dict[str, Any]) -> str:
    text = epochs_text(r, (cfg or {}).get("train") or {})
    if r.get("best_checkpoint_epoch"):
        text += f" · best checkpoint: epoch {r['best_checkpoint_epoch']} (by {readable(metrics.get('monitor', ''))})"
    return text


def interrupted_banner(metrics: dict[str, Any], config: dict[str, Any], run_dir: Path) -> dict[str, str] | None:
    """For a run stopped by Ctrl-C / SIGTERM (metrics.json: run.interrupted, see labelwise/training/interrupt.py):
    ``text`` (where it stopped, which model the bundle holds) and ``command`` (how to continue it), joined in
    ``line``; None for a run that finished."""
    r = metrics.get("run") or {}
    if not r.get("interrupted"):
        return None
    planned = planned_epochs(config.get("train") or {})
    at = f"epoch {r.get('epochs', '?')}" + (f" of {planned}" if planned else "")
    best = r.get("best_checkpoint_epoch")
    text = (f"This run was interrupted at {at}; the model is the best so far" + (f" (epoch {best})" if best else "")
            + ", and every score here is that model's.")
    command = f"labelwise train --config {Path(run_dir) / 'config.yaml'} --resume"
    return {"text": text, "command": command, "line": f"{text} `{command}` continues it."}


def interrupted_line(run_dir: str | Path) -> str | None:
    """The banner as one line for a terminal (``labelwise evaluate`` / ``report``), read from RUN's metrics.json and
    config.yaml; None for a run that finished, or whose files cannot be read (the command itself says why)."""
    from labelwise.errors import BundleError
    from labelwise.report.rundata import _read_json, _read_yaml

    run_dir = Path(run_dir)
    try:
        banner = interrupted_banner(_read_json(run_dir / "metrics.json", required=False) or {},
                                    _read_yaml(run_dir / "config.yaml"), run_dir)
    except BundleError:
        return None
    return banner["line"] if banner else None
