"""Gallery tiles: one image with its given and predicted labels, as the template shows it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelwise.labels import LabelSpace
from labelwise.report.gallery import Thumb


@dataclass
class Chip:
    text: str
    kind: str  # "ok" (labelled and predicted), "fn" (labelled, missed), "fp" (predicted, not labelled), "none"
    title: str = ""
    focus: bool = False  # the class a per-class gallery is about


@dataclass
class Tile:
    path: Path
    chips: list[Chip]
    note: str = ""  # one extra line (loss, fix, similarity)
    note_kind: str = ""  # css hint for the note
    thumb: Thumb | None = None
    extra: dict = field(default_factory=dict)
    map: Thumb | None = None  # the class-activation map over the thumbnail (a MapThumb, with its label)

    @property
    def name(self) -> str:
        return self.path.name


_TITLES = {"ok": "labelled and predicted", "fn": "labelled but not predicted (missed)",
           "fp": "predicted but not labelled", "none": ""}


def chips_for(prob: np.ndarray, given: np.ndarray, pred: np.ndarray, labels: LabelSpace, max_chips: int = 6,
              focus: int | None = None) -> list[Chip]:
    """Chips for one image: every label that is given or predicted, most probable first.

    ``focus``: a class shown first and highlighted, even when neither given nor predicted.
    """
    given, pred = np.asarray(given).astype(bool), np.asarray(pred).astype(bool)
    if labels.multilabel:
        shown = np.flatnonzero(given | pred)
        shown = shown[np.argsort(-prob[shown], kind="stable")]
        if focus is not None:
            shown = np.r_[focus, shown[shown != focus]].astype(int)
        chips = []
        for j in shown[:max_chips]:
            kind = "ok" if given[j] and pred[j] else ("fn" if given[j] else ("fp" if pred[j] else "none"))
            chips.append(Chip(f"{labels.names[j]} {prob[j]:.2f}", kind, _TITLES[kind] or "neither labelled nor predicted",
                              focus=j == focus))
        if len(shown) > max_chips:
            chips.append(Chip(f"+{len(shown) - max_chips}", "none", "more labels"))
        if not chips:
            chips.append(Chip("no label", "ok", "no label given and none predicted"))
        elif not given.any():
            chips.insert(0, Chip("no label given", "none", "the image has no label"))
        return chips
    top = int(np.argmax(prob))
    true = int(np.argmax(given)) if given.any() else -1
    if top == true:
        chips = [Chip(f"{labels.names[top]} {prob[top]:.2f}", "ok", "labelled and predicted", focus=top == focus)]
    else:
        chips = []
        if true >= 0:
            chips.append(Chip(f"{labels.names[true]} {prob[true]:.2f}", "fn", "the given class", focus=true == focus))
        chips.append(Chip(f"{labels.names[top]} {prob[top]:.2f}", "fp", "the predicted class", focus=top == focus))
    if focus is not None and focus not in (top, true):
        chips.insert(0, Chip(f"{labels.names[focus]} {prob[focus]:.2f}", "none", "neither labelled nor predicted",
                             focus=True))
    return chips
