"""The Data section: label counts and co-occurrence, an image summary, the files that could not be read."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labelwise.data.inspect import summarize
from labelwise.errors import LabelwiseError
from labelwise.report import plots

if TYPE_CHECKING:
    from labelwise.report.builder import Builder

def data_section(b: Builder) -> dict[str, Any]:
    run, s = b.run, b.samples
    out: dict[str, Any] = {"note": b.data_note, "summary": None, "figures": [], "skipped": []}
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
    no_label = int((targets.sum(1) == 0).sum()) if b.labels.multilabel else None
    out["no_label"] = no_label
    out["no_label_share"] = no_label / max(total, 1) if no_label is not None else None
    out["figures"].append(b.figure(plots.label_bars(b.names, counts, total, no_label), "labels",
                                      "images per label"))
    if b.labels.multilabel and len(b.names) > 1 and targets.sum() > 0:
        out["figures"].append(b.figure(plots.cooccurrence(b.names, targets), "cooccurrence",
                                          "label co-occurrence"))
    freq = run.meta.train_label_freq
    if freq:
        out["train_freq"] = [(n, f) for n, f in zip(b.names, freq)]
    skipped = [{"path": p, "reason": r} for p, r in run.skipped]
    if out["summary"]:
        skipped += out["summary"].get("unreadable", [])
    seen: set[str] = set()
    out["skipped"] = [x for x in skipped if not (x["path"] in seen or seen.add(x["path"]))]
    return out
