"""build_report(): a run directory -> report.html (+ report_files/ with plots and thumbnails).

The page opens from disk with no server and no network: every script and style is inline, every
image a relative file beside it. Optional parts (the dataset summary, the leakage check, cleanlab)
that cannot run say why in the page instead of failing the report.

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

from labelwise.data.duplicates import (
    DEFAULT_MIN_SIMILARITY,
    SIDE,
    cross_split_duplicates,
    fingerprint_paths,
)
from labelwise.data.inspect import summarize
from labelwise.data.sources import load_samples
from labelwise.errors import LabelwiseError
from labelwise.evaluation.baselines import BASELINE_DESCRIPTIONS
from labelwise.evaluation.metrics import (
    HIGHER_IS_BETTER,
    MONITOR_DEFAULT,
    finite_or_none,
    multilabel_metrics,
)
from labelwise.io import atomic_write_text
from labelwise.report import plots
from labelwise.report.analysis import (
    WARN_TITLE,
    class_picks,
    confusion_counts,
    decisions,
    image_losses,
    mixups,
    readable,
    verdict,
)
from labelwise.report.gallery import Thumbnails
from labelwise.report.label_issues import find_issues
from labelwise.report.rundata import Predictions, RunData, load_run
from labelwise.report.tiles import Chip, Tile, chips_for

# Caps that keep the page fast with thousands of images (thumbnails written = roughly their sum).
HIGHEST_LOSS = 40
PER_CLASS = 7  # images per strip (most/least confident, FP, FN): one row of tiles on a laptop screen
MAX_CLASS_GALLERIES = 30  # classes with galleries, worst F1 first
MAX_ISSUES = 60
MAX_PAIRS = 40
PAGE = 14  # tiles visible before "show more": two rows

SCORE_KEYS = {
    "multilabel": ("map", "auroc_macro", "f1_macro", "f1_micro", "f1_samples", "precision_macro", "recall_macro",
                   "exact_match", "hamming_accuracy", "mean_pred_labels", "empty_pred_share"),
    "multiclass": ("accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro",
                   "top5_accuracy", "top3_accuracy", "top_pred_share"),
}
METRIC_HELP = {
    "map": "mean over labels of average precision: how well the scores rank images (threshold-free)",
    "auroc_macro": "mean over labels of the area under the ROC curve; 0.5 = chance",
    "f1_macro": "F1 per label, averaged: every label counts the same",
    "f1_micro": "F1 over all (image, label) decisions pooled: frequent labels count more",
    "f1_samples": "F1 per image, averaged",
    "exact_match": "share of images whose predicted label set is exactly right",
    "hamming_accuracy": "share of (image, label) decisions that are right",
    "mean_pred_labels": "labels predicted per image (compare with the truth: {truth})",
    "empty_pred_share": "share of images predicted with no label (truth: {truth})",
    "accuracy": "share of images whose predicted class is right",
    "balanced_accuracy": "recall averaged over classes: every class counts the same",
    "top_pred_share": "share of images given the most common predicted class (truth: {truth})",
}
_TRUTH_KEYS = {"mean_pred_labels": "mean_true_labels", "empty_pred_share": "empty_true_share",
               "top_pred_share": "top_true_share"}


def build_report(run_dir: str | Path, data: str | Path | None = None, out: str | Path | None = None,
                 *, workers: int | None = None) -> Path:
    """Write the error-analysis report of a run directory and return the HTML file's path.

    ``data`` overrides where the dataset is (default: the path in config.yaml); it is needed for
    the dataset summary and the train/validation leakage check. ``out`` defaults to RUN/report.html;
    its plots and thumbnails go to a folder beside it named ``<out stem>_files``.
    """
    run = load_run(Path(run_dir))
    out = Path(out) if out else run.run_dir / "report.html"
    files_name = f"{out.stem}_files"
    final = out.parent / files_name
    staging = out.parent / f".{files_name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        ctx = _Builder(run, data, staging, files_name, workers).context()
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
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "–" if _bad(v) else f"{float(v):.0%}"
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
class _Figure:
    src: str
    width: int
    height: int
    alt: str


class _Builder:
    """Collects every section's context; thumbnails are written in one parallel pass at the end."""

    def __init__(self, run: RunData, data: str | Path | None, folder: Path, href: str, workers: int | None):
        self.run, self.folder, self.href, self.workers = run, folder, href, workers
        self.labels = run.labels
        self.names = list(run.labels.names)
        self.task = run.labels.task
        self.thumbs = Thumbnails(folder / "thumbs", f"{href}/thumbs", channels=run.meta.in_chans)
        self.tiles: list[Tile] = []
        self.samples, self.data_note = _load_dataset(run, data)
        if self.samples is not None:
            _relocate(run.val, self.samples.paths)
            if run.oof is not None:
                _relocate(run.oof, self.samples.paths)
        v = run.val
        self.pred = decisions(v.probs, self.labels, run.thresholds, run.meta.at_least_one)
        self.loss = image_losses(v.probs, v.targets, self.labels.multilabel)
        self.per_class = self._per_class_rows()

    # ------------------------------------------------------------------ helpers

    def figure(self, fig, name: str, alt: str) -> _Figure:
        w, h = plots.save(fig, self.folder / "plots" / f"{name}.png")
        return _Figure(f"{self.href}/plots/{name}.png", w, h, alt)

    def tile(self, row: int, note: str = "", note_kind: str = "", focus: int | None = None) -> Tile:
        """A gallery tile for validation row ``row`` (its thumbnail is written later, once)."""
        v = self.run.val
        chips = chips_for(v.probs[row], v.targets[row], self.pred[row], self.labels, focus=focus)
        return self._keep(Tile(v.paths[row], chips, note, note_kind))

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
            "page": PAGE,
            "backbone": run.meta.backbone,
            "versions_labelwise": (run.meta.versions or {}).get("labelwise", ""),
        }
        ctx["verdict"] = verdict(_with_monitor(m, self.task))
        ctx["test_verdict"] = verdict(_with_monitor(run.evaluation, self.task)) if run.evaluation else None
        ctx["run"] = self.run_section()
        ctx["data"] = self.data_section()
        ctx["training"] = self.training_section()
        ctx["scores"] = self.scores_section()
        ctx["per_class"] = self.per_class
        ctx["curves"] = self.curves_section()
        ctx["galleries"] = self.gallery_section()
        ctx["issues"] = self.issues_section()
        ctx["leakage"] = self.leakage_section()
        made = self.thumbs.write(self.workers)
        for t in self.tiles:
            t.thumb = made.get(t.path)
        ctx["missing_thumbs"] = sum(1 for t in made.values() if t is None)
        findings = self.findings(ctx)
        ctx["warnings"] = list(m.get("warnings") or []) + findings
        if findings and ctx["verdict"].level == "good":  # the report's own findings count as warnings too
            ctx["verdict"].level, ctx["verdict"].title = "warn", WARN_TITLE
        ctx["notes"] = list(m.get("notes") or []) + list((m.get("run") or {}).get("choices") or [])
        ctx["glance"] = self.glance(ctx)
        return ctx

    def run_section(self) -> dict[str, Any]:
        run, cfg = self.run, self.run.config
        d, mo, t = cfg.get("data") or {}, cfg.get("model") or {}, cfg.get("train") or {}
        r = run.metrics.get("run") or {}
        meta = run.meta
        rows = [
            ("task", f"{self.task} · {len(self.names)} labels"),
            ("data", f"{d.get('data', '?')} (format {d.get('format', 'auto')})"),
            ("backbone", f"{meta.backbone}" + (" · ImageNet-pretrained" if r.get("pretrained", mo.get("pretrained"))
                                               else " · from scratch")),
            ("strategy", {"linear-probe": "linear probe (frozen backbone, head trained on its features)",
                          "finetune": "fine-tuning"}.get(r.get("strategy") or t.get("strategy"), "fine-tuning")),
            ("input", f"{meta.image_size}×{meta.image_size} px, {meta.in_chans} channel{'s' if meta.in_chans != 1 else ''}"),
            ("images", _split_counts(r, len(run.val))),
            ("epochs", f"{r.get('epochs', '?')} run of {t.get('epochs', '?')} · best checkpoint: epoch "
                       f"{r.get('best_checkpoint_epoch', '?')} (by {readable(run.metrics.get('monitor', ''))})"),
            ("wall time", _duration(r.get("wall_time_s"))),
            ("optimiser", f"AdamW, lr {t.get('lr', '?')}, weight decay {t.get('weight_decay', '?')}, "
                          f"batch {t.get('batch_size', '?')}"),
            ("loss", f"{t.get('loss', 'auto')} · class weights {t.get('class_weights', 'none')} · "
                     f"sampler {t.get('sampler', 'none')} · label smoothing {t.get('label_smoothing', 0)}"),
            ("augmentation", str(t.get("augment", "?"))),
        ]
        if self.labels.multilabel:
            th = t.get("threshold")
            rows.append(("thresholds", f"one global cut-off {th}" if th is not None else
                         f"per label, tuned on validation for {t.get('threshold_objective', 'f1')}"
                         + (" · at least one label per image" if meta.at_least_one else "")))
        rows.append(("seed", str(meta.seed)))
        versions = " · ".join(f"{k} {v}" for k, v in (meta.versions or {}).items())
        rows.append(("versions", versions or "?"))
        rows.append(("run directory", str(run.run_dir.resolve())))
        return {"rows": rows}

    def data_section(self) -> dict[str, Any]:
        run, s = self.run, self.samples
        out: dict[str, Any] = {"note": self.data_note, "summary": None, "figures": [], "skipped": []}
        if s is not None:
            counts, total = s.targets.sum(0).astype(int), len(s)
            targets = s.targets
            where = f"all {total:,} images of the dataset"

            try:
                out["summary"] = summarize(s, max_probe=500)
            except (LabelwiseError, OSError) as e:
                out["note"] = f"Image summary skipped: {e}"
        else:
            # Without the dataset: validation labels, plus training frequencies from model.json.
            targets = run.val.targets
            counts, total = targets.sum(0).astype(int), len(run.val)
            where = f"the {total:,} validation images"
        out["where"] = where
        no_label = int((targets.sum(1) == 0).sum()) if self.labels.multilabel else None
        out["no_label"] = no_label
        out["no_label_share"] = no_label / max(total, 1) if no_label is not None else None
        out["figures"].append(self.figure(plots.label_bars(self.names, counts, total, no_label), "labels",
                                          "images per label"))
        if self.labels.multilabel and len(self.names) > 1 and targets.sum() > 0:
            out["figures"].append(self.figure(plots.cooccurrence(self.names, targets), "cooccurrence",
                                              "label co-occurrence"))
        freq = run.meta.train_label_freq
        if freq:
            out["train_freq"] = [(n, f) for n, f in zip(self.names, freq)]
        skipped = [{"path": p, "reason": r} for p, r in run.skipped]
        if out["summary"]:
            skipped += out["summary"].get("unreadable", [])
        seen: set[str] = set()
        out["skipped"] = [x for x in skipped if not (x["path"] in seen or seen.add(x["path"]))]
        return out

    def training_section(self) -> dict[str, Any]:
        h = self.run.history
        if not h:
            return {"figure": None, "rows": []}
        monitor = self.run.metrics.get("monitor") or MONITOR_DEFAULT[self.task]
        key = "val_loss" if monitor == "loss" else monitor
        best = (self.run.metrics.get("run") or {}).get("best_checkpoint_epoch") or None
        fig = self.figure(plots.training(h, key, readable(key), best), "training", "training curves")
        cols = [c for c in ("train_loss", "val_loss", key, "lr", "elapsed_s") if c in h[0]]
        rows = [{"epoch": int(r.get("epoch", i + 1)), "best": int(r.get("epoch", i + 1)) == best,
                 "cells": [r.get(c) for c in cols]} for i, r in enumerate(h)]
        return {"figure": fig, "cols": [readable(c) if c != "elapsed_s" else "elapsed (s)" for c in cols],
                "rows": rows if len(rows) <= 60 else rows[-60:], "best": best}

    def scores_section(self) -> dict[str, Any]:
        tables = [self._score_table(self.run.metrics, "Validation", f"{len(self.run.val):,} images")]
        ev = self.run.evaluation
        if ev:
            tables.append(self._score_table(ev, "Held-out test (evaluation.json)",
                                            f"{ev.get('n_images', '?'):,} images from {ev.get('data', '?')}"))
        return {"tables": tables}

    def _score_table(self, m: dict[str, Any], title: str, subtitle: str) -> dict[str, Any]:
        model = m.get("model") or {}
        cols: list[tuple[str, str, dict]] = [("model", "model" + (" (tuned thresholds)" if self.labels.multilabel else ""),
                                              model)]
        if "model_at_0.5" in m:
            cols.append(("model05", "model at 0.5", m["model_at_0.5"]))

        for name, b in (m.get("baselines") or {}).items():
            cols.append(("baseline", name.replace("_", " "), b | {"_help": BASELINE_DESCRIPTIONS.get(name, "")}))
        monitor = m.get("monitor")
        rows = []
        for key in SCORE_KEYS[self.task]:
            if key not in model:
                continue
            values = [finite_or_none(c[2].get(key)) for c in cols]
            direction = HIGHER_IS_BETTER.get(key)
            finite = [v for v in values if v is not None]
            best = (max(finite) if direction else min(finite)) if finite and direction is not None else None
            help_ = METRIC_HELP.get(key, "")
            if key in _TRUTH_KEYS and finite_or_none(model.get(_TRUTH_KEYS[key])) is not None:
                help_ = help_.format(truth=_num(model.get(_TRUTH_KEYS[key])))
            rows.append({"key": key, "name": readable(key), "help": help_, "monitor": key == monitor,
                         "cells": [{"value": v, "best": best is not None and v is not None and abs(v - best) < 1e-9}
                                   for v in values]})
        return {"title": title, "subtitle": subtitle,
                "cols": [{"kind": k, "name": n, "help": c.get("_help", "")} for k, n, c in cols], "rows": rows,
                "warnings": list(m.get("warnings") or []), "notes": list(m.get("notes") or [])}

    def _per_class_rows(self) -> list[dict[str, Any]]:
        v, run = self.run.val, self.run
        pc = (run.metrics.get("model") or {}).get("per_class") or {}
        # AP/AUROC per class for both tasks (multi-class one-vs-rest), from the saved predictions.
        ranked = multilabel_metrics(v.probs, v.targets, 0.5, self.names)["per_class"] if len(v) else {}
        counts = confusion_counts(v.targets, self.pred)
        freq = run.meta.train_label_freq or ()
        rows = []
        for j, name in enumerate(self.names):
            src = pc.get(name) or {}
            row = {"name": name,
                   "support": int(src.get("support", counts["tp"][j] + counts["fn"][j])),
                   "predicted": int(src.get("predicted", counts["tp"][j] + counts["fp"][j])),
                   "precision": finite_or_none(src.get("precision")), "recall": finite_or_none(src.get("recall")),
                   "f1": finite_or_none(src.get("f1")),
                   "ap": finite_or_none(src.get("ap", ranked.get(name, {}).get("ap"))),
                   "auroc": finite_or_none(src.get("auroc", ranked.get(name, {}).get("auroc"))),
                   "threshold": float(run.thresholds[j]) if self.labels.multilabel else None,
                   "train_freq": float(freq[j]) if j < len(freq) else None,
                   "tp": int(counts["tp"][j]), "fp": int(counts["fp"][j]), "fn": int(counts["fn"][j]),
                   "tn": int(counts["tn"][j])}
            rows.append(row)
        return rows

    def curves_section(self) -> dict[str, Any]:
        v = self.run.val
        c = len(self.names)
        ap = np.array([r["ap"] if r["ap"] is not None else 1.0 for r in self.per_class])
        if c <= plots.MAX_PANELS:
            classes, note = list(range(c)), ""
        else:
            classes = sorted(np.argsort(ap, kind="stable")[:plots.MAX_PANELS].tolist())
            note = f"The {plots.MAX_PANELS} classes with the lowest AP of {c} are shown."
        op: dict[int, tuple[float, float, str]] = {}
        chosen: dict[int, float] = {}
        for j in classes:
            r = self.per_class[j]
            if r["recall"] is None or r["precision"] is None:
                continue
            if self.labels.multilabel:
                op[j] = (r["recall"], r["precision"], f"cut {r['threshold']:.2f}")
                chosen[j] = float(r["threshold"])
            else:
                op[j] = (r["recall"], r["precision"], "argmax")
        out: dict[str, Any] = {"note": note, "figures": []}
        if len(v) and classes:
            out["figures"].append(self.figure(plots.pr_grid(self.names, v.probs, v.targets, classes, op),
                                              "pr_curves", "precision-recall curves per class"))
            out["figures"].append(self.figure(plots.threshold_grid(self.names, v.probs, v.targets, classes, chosen),
                                              "threshold_curves", "F1, precision and recall against threshold"))
        cm = (self.run.metrics.get("model") or {}).get("confusion_matrix")
        if not self.labels.multilabel:
            if cm is None or np.asarray(cm).shape != (c, c):
                y, p = v.targets.argmax(1), self.pred.argmax(1)
                cm = np.bincount(y * c + p, minlength=c * c).reshape(c, c)
            out["confusion"] = self.figure(plots.confusion_matrix(self.names, np.asarray(cm)), "confusion",
                                           "confusion matrix")
        else:
            cnt = confusion_counts(v.targets, self.pred)
            out["confusion"] = self.figure(plots.label_confusion(self.names, cnt["tp"], cnt["fp"], cnt["fn"]),
                                           "label_confusion", "per-label confusion counts")
        out["mixups"] = mixups(v.targets, self.pred, self.labels)
        return out

    def gallery_section(self) -> dict[str, Any]:
        v = self.run.val
        order = np.argsort(-self.loss, kind="stable")[:HIGHEST_LOSS]
        loss = [self.tile(int(i), note=f"loss {self.loss[i]:.2f}") for i in order]
        f1 = np.array([r["f1"] if r["f1"] is not None else 0.0 for r in self.per_class])
        classes = np.argsort(f1, kind="stable")[:MAX_CLASS_GALLERIES]
        per_class = []
        for j in classes:
            picks = class_picks(v.probs, v.targets, self.pred, self.labels, self.run.thresholds, int(j), PER_CLASS)
            r = self.per_class[int(j)]
            per_class.append({
                "name": picks.name, "row": r,
                "strips": [
                    {"title": "Most confident", "help": f"highest score for {picks.name}",
                     "tiles": [self.tile(i, focus=int(j)) for i in picks.most_confident], "total": None},
                    {"title": "Least confident", "help": "closest to the decision "
                     + ("threshold" if self.labels.multilabel else "(smallest gap between the top two classes)"),
                     "tiles": [self.tile(i, focus=int(j)) for i in picks.least_confident], "total": None},
                    {"title": "False positives", "help": f"predicted {picks.name} but not labelled so; highest score first",
                     "tiles": [self.tile(i, focus=int(j)) for i in picks.false_pos], "total": picks.n_false_pos},
                    {"title": "False negatives", "help": f"labelled {picks.name} but missed; lowest score first",
                     "tiles": [self.tile(i, focus=int(j)) for i in picks.false_neg], "total": picks.n_false_neg},
                ]})
        note = (f"Galleries for the {MAX_CLASS_GALLERIES} classes with the lowest F1 of {len(self.names)}."
                if len(self.names) > MAX_CLASS_GALLERIES else "")
        return {"loss": loss, "per_class": per_class, "note": note}

    def issues_section(self) -> dict[str, Any]:
        run = self.run
        p = run.oof if run.oof is not None else run.val
        pred = self.pred if p is run.val else decisions(p.probs, self.labels, run.thresholds, run.meta.at_least_one)
        result = find_issues(p.probs, p.targets, pred, self.labels)
        tiles = []
        for issue in result.issues[:MAX_ISSUES]:
            t = Tile(p.paths[issue.row], chips_for(p.probs[issue.row], p.targets[issue.row], pred[issue.row],
                                                   self.labels), " · ".join(issue.fixes), "fix")
            t.extra = {"quality": issue.quality}
            tiles.append(self._keep(t))
        where = ("out-of-fold predictions (every image)" if p is run.oof else
                 f"the {len(p):,} validation images")
        return {"tiles": tiles, "total": len(result.issues), "method": result.method, "error": result.error,
                "where": where, "n": len(p), "paths": [str(t.path) for t in tiles]}

    def leakage_section(self) -> dict[str, Any]:
        s, v = self.samples, self.run.val
        out: dict[str, Any] = {"pairs": [], "total": 0, "checked": False, "note": "", "threshold": DEFAULT_MIN_SIMILARITY,
                               "side": SIDE}
        if s is None:
            out["note"] = ("Not checked: the training images are not known without the dataset. " + self.data_note)
            return out
        val_set = set(v.paths)
        skipped = {Path(p) for p, _ in self.run.skipped}
        train = [p for p in s.paths if p not in val_set and p not in skipped]
        val = [p for p in v.paths if p.is_file()]
        if not train or not val:
            out["note"] = "Not checked: no training or no validation images found on disk."
            return out
        fp, bad = fingerprint_paths(val + train, self.run.meta.in_chans, workers=self.workers)
        pairs = cross_split_duplicates(fp.take(range(len(val), len(fp))), fp.take(range(len(val))))
        val_rows = {p: i for i, p in enumerate(v.paths)}
        train_rows = {p: i for i, p in enumerate(s.paths)}
        shown = []
        for pair in pairs[:MAX_PAIRS]:
            vp, tp = val[pair.val], train[pair.train]
            given = s.targets[train_rows[tp]].astype(bool)
            chips = [Chip(self.names[j], "given", "label of the training image") for j in np.flatnonzero(given)]
            a = self.tile(val_rows[vp], note="validation")
            b = self._keep(Tile(tp, chips or [Chip("no label", "given", "")], "training"))
            shown.append({"val": a, "train": b, "similarity": pair.similarity})
        out.update(checked=True, pairs=shown, total=len(pairs), n_val=len(val), n_train=len(train),
                   val_involved=len({p.val for p in pairs}), flat=int((fp.flat & ~_rows(bad, val + train)).sum()),
                   unreadable=len(bad), exact=len({p.val for p in pairs if p.identical}))
        return out

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
            what = _mistake(top, self.labels.multilabel)
            items.append({"label": "Most common mistake", "kind": "", "value": f"{what} ({top['count']}×)",
                          "href": "#curves"})
        iss = ctx["issues"]
        items.append({"label": "Suspected label errors", "kind": "warn" if iss["total"] else "good",
                      "value": f"{iss['total']} of {iss['n']:,} images", "href": "#label-errors"})
        lk = ctx["leakage"]
        if lk["checked"]:
            kind = "bad" if lk["exact"] else ("warn" if lk["total"] else "good")
            items.append({"label": "Train/validation near-duplicates", "kind": kind,
                          "value": _plural(lk["val_involved"], "validation image") if lk["total"] else "none found",
                          "href": "#leakage"})
        else:
            items.append({"label": "Train/validation near-duplicates", "kind": "", "value": "not checked",
                          "href": "#leakage"})
        n_skipped = len(ctx["data"]["skipped"])
        items.append({"label": "Unreadable files", "kind": "warn" if n_skipped else "good",
                      "value": f"{n_skipped}" if n_skipped else "none", "href": "#data"})
        return items


def _mistake(m: dict[str, Any], multilabel: bool) -> str:
    if not multilabel:
        return f"{m['true']} taken for {m['predicted']}"
    if m["true"] == "(nothing)":
        return f"adds {m['predicted']} wrongly"
    if m["predicted"] == "(nothing)":
        return f"misses {m['true']}"
    return f"{m['true']} taken for {m['predicted']}"


def _with_monitor(m: dict[str, Any], task: str) -> dict[str, Any]:
    """The verdict needs a score: a run selected on loss is judged on the task's default metric."""
    if m.get("monitor") in (m.get("model") or {}):
        return m
    return m | {"monitor": MONITOR_DEFAULT[task]}


def _load_dataset(run: RunData, data: str | Path | None):
    """(Samples or None, a note saying what was used or why not)."""

    d = run.config.get("data") or {}
    where = Path(data) if data else _find_data(Path(str(d.get("data") or "")), run.val.paths)
    if where is None or str(where) in ("", "."):
        return None, "The dataset path is not recorded in config.yaml; pass --data DATA to `labelwise report`."
    if not where.exists():
        return None, f"The dataset {where} was not found; pass --data DATA to `labelwise report`."
    images = d.get("images")
    try:
        s = load_samples(where, fmt=str(d.get("format") or "auto"),
                         images=Path(images) if images and Path(images).exists() else None,
                         delimiter=str(d.get("delimiter") or " "))
    except LabelwiseError as e:
        return None, f"The dataset could not be read ({e}); pass --data DATA to `labelwise report`."
    if set(s.labels.names) - set(run.labels.names):
        return None, (f"{where} has labels the model does not know "
                      f"({sorted(set(s.labels.names) - set(run.labels.names))[:5]}); is it the training set?")
    return s, f"Dataset: {where.resolve()}"


def _find_data(recorded: Path, val_paths: list[Path]) -> Path | None:
    """Where the recorded (possibly relative) data path is: as given, else beside an ancestor of
    a validation image (training ran in another working directory)."""
    if not str(recorded) or str(recorded) == "." or recorded.exists() or recorded.is_absolute():
        return recorded
    for image in val_paths[:1]:
        for folder in image.parents:
            if (folder / recorded).exists():
                return folder / recorded
    return recorded


def _relocate(p: Predictions, dataset_paths: list[Path]) -> None:
    """Point predictions whose image moved at the dataset's copy (matched by folder + file name)."""
    if all(x.is_file() for x in p.paths[:50]) and all(x.is_file() for x in p.paths):
        return
    by_two = {(x.parent.name, x.name): x for x in dataset_paths}
    by_name: dict[str, Path | None] = {}
    for x in dataset_paths:
        by_name[x.name] = None if x.name in by_name else x  # None marks an ambiguous name
    p.paths = [x if x.is_file() else (by_two.get((x.parent.name, x.name)) or by_name.get(x.name) or x)
               for x in p.paths]


def _rows(paths: dict[Path, str], order: list[Path]) -> np.ndarray:
    """Boolean mask over ``order``: True where the path is a key of ``paths``."""
    return np.array([p in paths for p in order], dtype=bool)


def _split_counts(r: dict[str, Any], n_val: int) -> str:
    if not isinstance(r.get("train_images"), int):
        return f"{n_val:,} validation"
    return (f"{r['train_images']:,} train · {r.get('val_images', n_val):,} validation · "
            f"{r.get('skipped_images', 0)} skipped")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"




def _bad(v: Any) -> bool:
    return finite_or_none(v) is None


def _num(v: Any, digits: int = 3) -> str:
    """Counts with thousands separators; scores with ``digits`` decimals; tiny values in e-notation."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    f = finite_or_none(v)
    if f is None:
        return "–"
    if abs(f) >= 10:
        return f"{f:,.1f}"
    if abs(f) < 1e-3 and f != 0:
        return f"{f:.1e}"
    return f"{f:.{digits}f}"


def _duration(s: Any) -> str:
    f = finite_or_none(s)
    if f is None:
        return "?"
    if f < 120:
        return f"{f:.0f} s"
    if f < 7200:
        return f"{f / 60:.1f} min"
    return f"{f / 3600:.1f} h"
