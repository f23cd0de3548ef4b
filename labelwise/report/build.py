"""build_report(): a run directory -> report.html (+ report_files/ with plots, thumbnails and maps).

The page opens from disk with no server and no network: every script and style is inline, every
image a relative file beside it. Optional parts (the dataset summary, the leakage check, cleanlab,
the class-activation maps) that cannot run say why in the page instead of failing the report.
Each section's context is built in labelwise/report/sections/; this file holds what they share.

>>> build_report("runs/demo")                      # doctest: +SKIP
PosixPath('runs/demo/report.html')
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelwise.evaluation.metrics import MONITOR_DEFAULT
from labelwise.io import atomic_write_text
from labelwise.report import plots
from labelwise.report.analysis import (
    WARN_TITLE,
    decisions,
    image_losses,
    readable,
    verdict,
)
from labelwise.report.dataset import load_dataset, relocate
from labelwise.report.format import bad, mistake, num, plural
from labelwise.report.gallery import Thumbnails
from labelwise.report.maps import MapWriter
from labelwise.report.rundata import RunData, load_run
from labelwise.report.sections.curves import curves_section
from labelwise.report.sections.data import data_section
from labelwise.report.sections.galleries import gallery_section, issues_section
from labelwise.report.sections.leakage import leakage_section
from labelwise.report.sections.run import run_section
from labelwise.report.sections.scores import per_class_rows, scores_section
from labelwise.report.sections.training import training_section
from labelwise.report.tiles import Tile, chips_for

PAGE = 14  # tiles visible before "show more": two rows


def build_report(run_dir: str | Path, data: str | Path | None = None, out: str | Path | None = None,
                 *, workers: int | None = None, maps: bool = True) -> Path:
    """Write the error-analysis report of a run directory and return the HTML file's path.

    ``data`` overrides where the dataset is (default: the path in config.yaml); it is needed for
    the dataset summary and the train/validation leakage check. ``out`` defaults to RUN/report.html;
    its plots and thumbnails go to a folder beside it named ``<out stem>_files``. ``maps``: draw a
    class-activation map for every gallery image (see labelwise/infer/explain.py).
    """
    run = load_run(Path(run_dir))
    out = Path(out) if out else run.run_dir / "report.html"
    files_name = f"{out.stem}_files"
    final = out.parent / files_name
    staging = out.parent / f".{files_name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        ctx = Builder(run, data, staging, files_name, workers, maps).context()
        html = render(ctx)
        _swap_folder(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(out, html)
    return out


def render(ctx: dict[str, Any]) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = num
    env.filters["pct"] = lambda v: "–" if bad(v) else f"{float(v):.0%}"
    env.filters["uri"] = lambda p: Path(p).resolve().as_uri()
    env.filters["readable"] = readable
    return env.get_template("report.html.j2").render(**ctx)


def _swap_folder(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging`` (two renames; the old folder is removed afterwards)."""
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


@dataclass
class Figure:
    src: str
    width: int
    height: int
    alt: str


class Builder:
    """Collects every section's context; thumbnails and maps are written in one pass at the end."""

    def __init__(self, run: RunData, data: str | Path | None, folder: Path, href: str, workers: int | None,
                 maps: bool = True):
        self.run, self.folder, self.href, self.workers = run, folder, href, workers
        self.labels = run.labels
        self.names = list(run.labels.names)
        self.task = run.labels.task
        self.thumbs = Thumbnails(folder / "thumbs", f"{href}/thumbs", channels=run.meta.in_chans)
        self.maps = MapWriter(run, folder / "maps", f"{href}/maps", enabled=maps)
        self.tiles: list[Tile] = []
        self.samples, self.data_note = load_dataset(run, data)
        if self.samples is not None:
            relocate(run.val, self.samples.paths)
            if run.oof is not None and run.oof is not run.val:
                relocate(run.oof, self.samples.paths)
        v = run.val
        self.pred = decisions(v.probs, self.labels, run.thresholds, run.meta.at_least_one)
        self.loss = image_losses(v.probs, v.targets, self.labels.multilabel)
        self.per_class = per_class_rows(self)

    # ------------------------------------------------------------------ helpers

    def figure(self, fig, name: str, alt: str) -> Figure:
        w, h = plots.save(fig, self.folder / "plots" / f"{name}.png")
        return Figure(f"{self.href}/plots/{name}.png", w, h, alt)

    def tile(self, row: int, note: str = "", note_kind: str = "", focus: int | None = None) -> Tile:
        """A gallery tile for validation row ``row`` with the map of the label it is about (``focus``, else
        the label that costs the image most loss); thumbnail and map are written later, once."""
        v = self.run.val
        chips = chips_for(v.probs[row], v.targets[row], self.pred[row], self.labels, focus=focus)
        t = self._keep(Tile(v.paths[row], chips, note, note_kind))
        self.maps.add(t, focus if focus is not None else self.about(v.probs[row], v.targets[row]))
        return t

    def about(self, prob: np.ndarray, given: np.ndarray) -> int:
        """The label an image's map shows when no label is in focus: multi-label, the one with the highest
        loss (a missed or a wrongly added label); multi-class, the predicted class (what the model saw)."""
        if not self.labels.multilabel:
            return int(np.argmax(prob))
        p = np.clip(prob, 1e-7, 1 - 1e-7)
        return int(np.argmax(np.where(np.asarray(given) > 0, -np.log(p), -np.log1p(-p))))

    def _keep(self, t: Tile) -> Tile:
        self.thumbs.add(t.path)
        self.tiles.append(t)
        return t

    # ------------------------------------------------------------------ sections

    def context(self) -> dict[str, Any]:
        run, m = self.run, self.run.metrics
        ctx: dict[str, Any] = {
            "title": run.run_dir.resolve().name,
            "run_path": str(run.run_dir.resolve()),
            "created": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "task": self.task,
            "multilabel": self.labels.multilabel,
            "n_val": len(run.val),
            "oof": run.val.source == "oof",
            "page": PAGE,
            "backbone": run.meta.backbone,
            "versions_labelwise": (run.meta.versions or {}).get("labelwise", ""),
        }
        ctx["verdict"] = verdict(_with_monitor(m, self.task))
        ctx["test_verdict"] = verdict(_with_monitor(run.evaluation, self.task)) if run.evaluation else None
        ctx["run"] = run_section(self)
        ctx["data"] = data_section(self)
        ctx["training"] = training_section(self)
        ctx["scores"] = scores_section(self)
        ctx["per_class"] = self.per_class
        ctx["curves"] = curves_section(self)
        ctx["galleries"] = gallery_section(self)
        ctx["issues"] = issues_section(self)
        ctx["leakage"] = leakage_section(self)
        made = self.thumbs.write(self.workers)
        for t in self.tiles:
            t.thumb = made.get(t.path)
        ctx["maps"] = self.maps.write(made)
        ctx["missing_thumbs"] = sum(1 for t in made.values() if t is None)
        findings = self.findings(ctx)
        ctx["warnings"] = list(m.get("warnings") or []) + findings
        if findings and ctx["verdict"].level == "good":  # the report's own findings count as warnings too
            ctx["verdict"].level, ctx["verdict"].title = "warn", WARN_TITLE
        ctx["notes"] = list(m.get("notes") or []) + list((m.get("run") or {}).get("choices") or [])
        ctx["glance"] = self.glance(ctx)
        return ctx

    def findings(self, ctx: dict[str, Any]) -> list[str]:
        """Warnings the report adds to those in metrics.json, in the same plain words."""
        out = []
        never = [r["name"] for r in self.per_class if r["support"] > 0 and r["predicted"] == 0]
        if never:
            shown = ", ".join(never[:8]) + (f" and {len(never) - 8} more" if len(never) > 8 else "")
            out.append(f"{len(never)} of {len(self.names)} classes are never predicted on the validation "
                       f"images: {shown}.")
        lk = ctx["leakage"]
        if lk.get("exact"):
            out.append(f"{lk['exact']} validation images are copies of training images (identical up to "
                       "brightness): their scores flatter the model. See Leakage.")
        return out

    def glance(self, ctx: dict[str, Any]) -> list[dict[str, str]]:
        """The few facts that say where the model fails, for the top of the page."""
        items = []
        rows = [r for r in self.per_class if r["f1"] is not None and r["support"] > 0]
        if rows:
            worst = sorted(rows, key=lambda r: r["f1"])[:3]
            items.append({"label": "Weakest classes (F1)", "kind": "bad" if worst[0]["f1"] < 0.5 else "",
                          "value": ", ".join(f"{r['name']} {r['f1']:.2f}" for r in worst), "href": "#scores"})
        mix = ctx["curves"]["mixups"]
        if mix:
            top = mix[0]
            what = mistake(top, self.labels.multilabel)
            items.append({"label": "Most common mistake", "kind": "", "value": f"{what} ({top['count']}×)",
                          "href": "#curves"})
        iss = ctx["issues"]
        items.append({"label": "Suspected label errors", "kind": "warn" if iss["total"] else "good",
                      "value": f"{iss['total']} of {iss['n']:,} images", "href": "#label-errors"})
        lk = ctx["leakage"]
        if lk["checked"]:
            kind = "bad" if lk["exact"] else ("warn" if lk["total"] else "good")
            items.append({"label": "Train/validation near-duplicates", "kind": kind,
                          "value": plural(lk["val_involved"], "validation image") if lk["total"] else "none found",
                          "href": "#leakage"})
        else:
            items.append({"label": "Train/validation near-duplicates", "kind": "", "value": "not checked",
                          "href": "#leakage"})
        n_skipped = len(ctx["data"]["skipped"])
        items.append({"label": "Unreadable files", "kind": "warn" if n_skipped else "good",
                      "value": f"{n_skipped}" if n_skipped else "none", "href": "#data"})
        return items


def _with_monitor(m: dict[str, Any], task: str) -> dict[str, Any]:
    """The verdict needs a score: a run selected on loss is judged on the task's default metric."""
    if m.get("monitor") in (m.get("model") or {}):
        return m
    return m | {"monitor": MONITOR_DEFAULT[task]}
