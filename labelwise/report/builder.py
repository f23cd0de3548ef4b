"""The Builder: what the report's sections share (the run, decisions, losses, tiles, figures, maps)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelwise.report import plots
from labelwise.report.analysis import decisions, image_losses
from labelwise.report.dataset import load_dataset, relocate
from labelwise.report.format import mistake, plural
from labelwise.report.gallery import Thumbnails
from labelwise.report.maps import MapWriter
from labelwise.report.rundata import RunData
from labelwise.report.tiles import Tile, chips_for


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
        self.thumbs = Thumbnails(folder / "thumbs", f"{href}/thumbs", channels=run.meta.in_chans,
                                 pixel_spec=run.meta.pixel_spec)
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
        self.per_class: list[dict[str, Any]] = []  # filled by sections.scores.per_class_rows

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
