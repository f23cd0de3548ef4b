"""The galleries: highest loss, per class (most / least confident, false positives and negatives),
the lowest-scored positives (what the model misses most), and the suspected label errors. Every
tile carries the class-activation map of the label it is about (see labelwise/report/maps.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from labelwise.report.analysis import class_picks, decisions
from labelwise.report.label_issues import find_issues
from labelwise.report.tiles import Tile, chips_for

if TYPE_CHECKING:
    from labelwise.report.builder import Builder

# Caps that keep the page fast with thousands of images (thumbnails written = roughly their sum).
HIGHEST_LOSS = 40
PER_CLASS = 7  # images per strip (most/least confident, FP, FN): one row of tiles on a laptop screen
MAX_CLASS_GALLERIES = 30  # classes with galleries, worst F1 first
LOWEST_POSITIVES = 28  # (image, label) pairs in "what the model misses most"
MAX_ISSUES = 60


def gallery_section(b: Builder) -> dict[str, Any]:
    v = b.run.val
    order = np.argsort(-b.loss, kind="stable")[:HIGHEST_LOSS]
    loss = [b.tile(int(i), note=f"loss {b.loss[i]:.2f}") for i in order]
    f1 = np.array([r["f1"] if r["f1"] is not None else 0.0 for r in b.per_class])
    classes = np.argsort(f1, kind="stable")[:MAX_CLASS_GALLERIES]
    per_class = []
    for j in classes:
        picks = class_picks(v.probs, v.targets, b.pred, b.labels, b.run.thresholds, int(j), PER_CLASS)
        r = b.per_class[int(j)]
        per_class.append({
            "name": picks.name, "row": r,
            "strips": [
                {"title": "Most confident", "help": f"highest score for {picks.name}",
                 "tiles": [b.tile(i, focus=int(j)) for i in picks.most_confident], "total": None},
                {"title": "Least confident", "help": "closest to the decision "
                 + ("threshold" if b.labels.multilabel else "(smallest gap between the top two classes)"),
                 "tiles": [b.tile(i, focus=int(j)) for i in picks.least_confident], "total": None},
                {"title": "False positives", "help": f"predicted {picks.name} but not labelled so; highest score first",
                 "tiles": [b.tile(i, focus=int(j)) for i in picks.false_pos], "total": picks.n_false_pos},
                {"title": "False negatives", "help": f"labelled {picks.name} but missed; lowest score first",
                 "tiles": [b.tile(i, focus=int(j)) for i in picks.false_neg], "total": picks.n_false_neg},
            ]})
    note = (f"Galleries for the {MAX_CLASS_GALLERIES} classes with the lowest F1 of {len(b.names)}."
            if len(b.names) > MAX_CLASS_GALLERIES else "")
    return {"loss": loss, "per_class": per_class, "note": note, "lowest": lowest_positives(b)}


def lowest_positives(b: Builder) -> list[Tile]:
    """(image, label) pairs where the label is given, lowest score for it first: what the model misses most."""
    v = b.run.val
    rows, cols = np.nonzero(v.targets)
    if not len(rows):
        return []
    scores = v.probs[rows, cols]
    order = np.argsort(scores, kind="stable")[:LOWEST_POSITIVES]
    return [b.tile(int(rows[k]), note=f"{b.names[cols[k]]} scored {scores[k]:.2f}", focus=int(cols[k]))
            for k in order]


def issues_section(b: Builder) -> dict[str, Any]:
    run = b.run
    p = run.oof if run.oof is not None else run.val
    pred = b.pred if p is run.val else decisions(p.probs, b.labels, run.thresholds, run.meta.at_least_one)
    result = find_issues(p.probs, p.targets, pred, b.labels)
    tiles = []
    for issue in result.issues[:MAX_ISSUES]:
        t = Tile(p.paths[issue.row], chips_for(p.probs[issue.row], p.targets[issue.row], pred[issue.row],
                                               b.labels), " · ".join(issue.fixes), "fix")
        t.extra = {"quality": issue.quality}
        tiles.append(b._keep(t))
        b.maps.add(t, b.about(p.probs[issue.row], p.targets[issue.row]))
    where = ("out-of-fold predictions (every image)" if p.source == "oof" else
             f"the {len(p):,} validation images")
    return {"tiles": tiles, "total": len(result.issues), "method": result.method, "error": result.error,
            "where": where, "n": len(p), "paths": [str(t.path) for t in tiles]}
