"""The Curves section: precision-recall and threshold curves per class, the confusion matrix, the most
common mistakes."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from labelwise.report import plots
from labelwise.report.analysis import confusion_counts, mixups

if TYPE_CHECKING:
    from labelwise.report.builder import Builder

def curves_section(b: Builder) -> dict[str, Any]:
    v = b.run.val
    c = len(b.names)
    ap = np.array([r["ap"] if r["ap"] is not None else 1.0 for r in b.per_class])
    if c <= plots.MAX_PANELS:
        classes, note = list(range(c)), ""
    else:
        classes = sorted(np.argsort(ap, kind="stable")[:plots.MAX_PANELS].tolist())
        note = f"The {plots.MAX_PANELS} classes with the lowest AP of {c} are shown."
    op: dict[int, tuple[float, float, str]] = {}
    chosen: dict[int, float] = {}
    for j in classes:
        r = b.per_class[j]
        if r["recall"] is None or r["precision"] is None:
            continue
        if b.labels.multilabel:
            op[j] = (r["recall"], r["precision"], f"cut {r['threshold']:.2f}")
            chosen[j] = float(r["threshold"])
        else:
            op[j] = (r["recall"], r["precision"], "argmax")
    out: dict[str, Any] = {"note": note, "figures": []}
    if len(v) and classes:
        out["figures"].append(b.figure(plots.pr_grid(b.names, v.probs, v.targets, classes, op),
                                          "pr_curves", "precision-recall curves per class"))
        out["figures"].append(b.figure(plots.threshold_grid(b.names, v.probs, v.targets, classes, chosen),
                                          "threshold_curves", "F1, precision and recall against threshold"))
    cm = (b.run.metrics.get("model") or {}).get("confusion_matrix")
    if not b.labels.multilabel:
        if cm is None or np.asarray(cm).shape != (c, c):
            y, p = v.targets.argmax(1), b.pred.argmax(1)
            cm = np.bincount(y * c + p, minlength=c * c).reshape(c, c)
        out["confusion"] = b.figure(plots.confusion_matrix(b.names, np.asarray(cm)), "confusion",
                                       "confusion matrix")
    else:
        cnt = confusion_counts(v.targets, b.pred)
        out["confusion"] = b.figure(plots.label_confusion(b.names, cnt["tp"], cnt["fp"], cnt["fn"]),
                                       "label_confusion", "per-label confusion counts")
    out["mixups"] = mixups(v.targets, b.pred, b.labels)
    return out
