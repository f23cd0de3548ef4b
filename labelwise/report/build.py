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
from pathlib import Path
from typing import Any

from labelwise.evaluation.metrics import MONITOR_DEFAULT
from labelwise.io import atomic_write_text
from labelwise.report.analysis import (
    WARN_TITLE,
    readable,
    verdict,
)
from labelwise.report.builder import Builder
from labelwise.report.format import bad, num
from labelwise.report.rundata import load_run
from labelwise.report.sections.curves import curves_section
from labelwise.report.sections.data import data_section
from labelwise.report.sections.galleries import gallery_section, issues_section
from labelwise.report.sections.leakage import leakage_section
from labelwise.report.sections.run import interrupted_banner, run_section
from labelwise.report.sections.scores import per_class_rows, scores_section
from labelwise.report.sections.training import training_section

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
        b = Builder(run, data, staging, files_name, workers, maps)
        b.per_class = per_class_rows(b)
        ctx = context(b)
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


def context(b: Builder) -> dict[str, Any]:
    """Every section's part of the template context; thumbnails and maps are written last, in one pass."""
    run, m = b.run, b.run.metrics
    ctx: dict[str, Any] = {
        "title": run.run_dir.resolve().name,
        "run_path": str(run.run_dir.resolve()),
        "created": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "task": b.task,
        "multilabel": b.labels.multilabel,
        "n_val": len(run.val),
        "oof": run.val.source == "oof",
        "page": PAGE,
        "backbone": run.meta.backbone,
        "versions_labelwise": (run.meta.versions or {}).get("labelwise", ""),
    }
    ctx["interrupted"] = interrupted_banner(m, run.config, run.run_dir.resolve())
    ctx["verdict"] = verdict(_with_monitor(m, b.task))
    ctx["test_verdict"] = verdict(_with_monitor(run.evaluation, b.task)) if run.evaluation else None
    ctx["run"] = run_section(b)
    ctx["data"] = data_section(b)
    ctx["training"] = training_section(b)
    ctx["scores"] = scores_section(b)
    ctx["per_class"] = b.per_class
    ctx["curves"] = curves_section(b)
    ctx["galleries"] = gallery_section(b)
    ctx["issues"] = issues_section(b)
    ctx["leakage"] = leakage_section(b)
    made = b.thumbs.write(b.workers)
    for t in b.tiles:
        t.thumb = made.get(t.path)
    ctx["maps"] = b.maps.write(made)
    ctx["missing_thumbs"] = sum(1 for t in made.values() if t is None)
    findings = b.findings(ctx)
    ctx["warnings"] = list(m.get("warnings") or []) + findings
    if findings and ctx["verdict"].level == "good":  # the report's own findings count as warnings too
        ctx["verdict"].level, ctx["verdict"].title = "warn", WARN_TITLE
    notes = list(m.get("notes") or [])
    if ctx["interrupted"]:  # the banner says it at the top; training's own note would only repeat it
        notes = [n for n in notes if not str(n).startswith("Training was stopped by")]
    ctx["notes"] = notes + list((m.get("run") or {}).get("choices") or [])
    ctx["glance"] = b.glance(ctx)
    return ctx


def _with_monitor(m: dict[str, Any], task: str) -> dict[str, Any]:
    """The verdict needs a score: a run selected on loss is judged on the task's default metric."""
    if m.get("monitor") in (m.get("model") or {}):
        return m
    return m | {"monitor": MONITOR_DEFAULT[task]}
