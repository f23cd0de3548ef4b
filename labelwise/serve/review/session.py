"""What the review shows: a run, its dataset, the queues of images worth a look, one item's details.

No web code here: app.py turns these into routes, export.py into a labels file.

Images are known by a *key*: the path relative to the dataset's folder (forward slashes), or
``to-label/<path relative to the pool>`` for an image from suggest's to_label.csv. A key from a
client is checked (no ``..``, no absolute path, no backslash) and then looked up: only images of
the dataset or of the to-label list can be shown or decided on.

Queues (each item: key, why, suggested labels; pairs also the other image):
  issues     suspected label errors (cleanlab on out-of-sample probabilities, labelwise.report)
  duplicates validation images that are near-copies of training images (labelwise.data.duplicates)
  loss       highest-loss validation images
  disagree   given labels differ from the model's out-of-sample decision
  to-label   suggest's picks, pre-filled with the model's guess
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelwise.data.duplicates import cross_split_duplicates, fingerprint_paths
from labelwise.errors import LabelwiseError, did_you_mean
from labelwise.infer.predict import Predictor
from labelwise.infer.suggest import DEFAULT_OUT as TO_LABEL_FILE
from labelwise.infer.suggest import read_to_label
from labelwise.report.analysis import decisions, image_losses
from labelwise.report.dataset import load_dataset, relocate
from labelwise.report.label_issues import find_issues
from labelwise.report.rundata import load_run
from labelwise.serve.review.decisions import ACTIONS, FILE_NAME, DecisionLog

MAX_QUEUE = 300  # items per queue (loss, disagreements); the worst first
POOL_PREFIX = "to-label/"
MAX_KEY_CHARS = 1000
QUEUES = {  # name -> (title, what it holds)
    "issues": ("Suspected label errors", "cleanlab flags the given labels as unlikely (out-of-sample)"),
    "duplicates": ("Near-duplicates across the split", "validation images that are copies of training images"),
    "loss": ("Highest loss", "validation images the model finds hardest to reconcile with their labels"),
    "disagree": ("Given vs predicted", "the given labels differ from the model's out-of-sample decision"),
    "to-label": ("To label", "images `labelwise suggest` picked; pre-filled with the model's guess"),
}


class ReviewInputError(LabelwiseError):
    """A request the review refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Item:
    key: str
    path: Path
    split: str  # "train", "validation" or "to-label"
    row: int | None = None  # into samples (None for pool images)
    given: np.ndarray | None = None  # (C,) bool; None for pool images (no label yet)
    probs: np.ndarray | None = None  # out-of-sample probabilities, when the run saved them
    guess: list[str] | None = None  # suggest's guess (to-label items)


class ReviewSession:
    """Everything `labelwise review` needs, loaded once."""

    def __init__(self, run_dir: str | Path, data: str | Path | None = None, to_label: str | Path | None = None,
                 who: str | None = None, find_duplicates: bool = True):
        self.run_dir = Path(run_dir)
        self.run = load_run(self.run_dir)
        self.labels = self.run.labels
        self.thresholds = self.run.thresholds
        samples, note = load_dataset(self.run, data)
        if samples is None:
            raise LabelwiseError(f"review needs the training data: {note}")
        self.samples = samples
        self.review_dir = self.run_dir / "review"
        self.log = DecisionLog(self.review_dir / FILE_NAME)
        self.who = who or _user()
        self._predictor = None
        self._model_probs: dict[str, np.ndarray] = {}

        self.root = Path(os.path.commonpath([str(p.parent) for p in samples.paths]))
        self.items: dict[str, Item] = {}
        self._by_path: dict[Path, str] = {}
        oos = self.run.oof if self.run.oof is not None else self.run.val
        for pred in {id(self.run.val): self.run.val, id(oos): oos}.values():
            relocate(pred, samples.paths)
        val_paths = {p for p in self.run.val.paths}
        for i, p in enumerate(samples.paths):
            key = p.relative_to(self.root).as_posix()
            self.items[key] = Item(key, p, "validation" if p in val_paths else "train", i,
                                   samples.targets[i].astype(bool))
            self._by_path[p] = key
        self.oos = oos
        self.oos_keys: list[str | None] = [self._by_path.get(p) for p in oos.paths]
        for r, key in enumerate(self.oos_keys):
            if key is not None:
                self.items[key].probs = oos.probs[r]
        self.queues: dict[str, list[dict[str, Any]]] = {}
        self._build_queues(find_duplicates)
        self.to_label_path = Path(to_label) if to_label else self.run_dir / TO_LABEL_FILE
        self.queues["to-label"] = self._to_label_queue()

    # ------------------------------------------------------------------ queues

    def _build_queues(self, find_duplicates: bool) -> None:
        p = self.oos
        rows = [r for r, k in enumerate(self.oos_keys) if k is not None]
        probs, targets = p.probs[rows], p.targets[rows]
        keys = [self.oos_keys[r] for r in rows]
        pred = decisions(probs, self.labels, self.thresholds, self.run.meta.at_least_one)
        self._pred = {k: pred[j] for j, k in enumerate(keys)}
        names = self.labels.names

        found = find_issues(probs, targets, pred, self.labels) if len(rows) else None
        self.issue_method = found.method if found else ""
        self.queues["issues"] = [
            {"id": keys[i.row], "why": " · ".join(i.fixes) + f" (label quality {i.quality:.2f})"}
            for i in (found.issues if found else [])]

        loss = image_losses(probs, targets, self.labels.multilabel)
        order = np.argsort(-loss, kind="stable")
        self.queues["loss"] = [{"id": keys[j], "why": f"loss {loss[j]:.2f}"} for j in order[:MAX_QUEUE]]
        differ = [j for j in order if (pred[j] != targets[j].astype(bool)).any()]

        def said(row: np.ndarray) -> str:
            return ", ".join(names[k] for k in np.flatnonzero(row)) or "no label"

        self.queues["disagree"] = [{"id": keys[j], "why": f"given: {said(targets[j])} · predicted: {said(pred[j])}"}
                                   for j in differ[:MAX_QUEUE]]
        self.queues["duplicates"] = self._duplicates() if find_duplicates else []

    def _duplicates(self) -> list[dict[str, Any]]:
        val = [it for it in self.items.values() if it.split == "validation"]
        train = [it for it in self.items.values() if it.split == "train"]
        if not val or not train:
            return []
        fp, _ = fingerprint_paths([it.path for it in val + train], self.run.meta.in_chans,
                                  pixel_spec=self.run.meta.pixel_spec)
        pairs = cross_split_duplicates(fp.take(range(len(val), len(fp))), fp.take(range(len(val))))
        return [{"id": val[d.val].key, "other": train[d.train].key,
                 "why": f"similarity {d.similarity:.3f} to training image {train[d.train].key}"
                        + (" (identical up to brightness)" if d.identical else "")}
                for d in pairs[:MAX_QUEUE]]

    def _to_label_queue(self) -> list[dict[str, Any]]:
        if not self.to_label_path.is_file():
            return []
        picks = read_to_label(self.to_label_path, self.labels)
        # relative paths in a hand-made list are taken from the list's folder
        paths = [(pk.path if pk.path.is_absolute() else self.to_label_path.parent / pk.path).absolute() for pk in picks]
        existing = [p for p in paths if p.is_file()]
        root = Path(os.path.commonpath([str(p.parent) for p in existing])) if existing else None
        out = []
        for pk, path in zip(picks, paths):
            if not path.is_file():
                continue
            key = self._by_path.get(path) or POOL_PREFIX + path.relative_to(root).as_posix()
            if key not in self.items:
                self.items[key] = Item(key, path, "to-label", guess=pk.guess)
                self._by_path[path] = key
            out.append({"id": key, "why": pk.why or "picked by suggest", "suggested": pk.guess})
        return out

    # ------------------------------------------------------------------ items

    def item(self, key: Any) -> Item:
        """The item a client names, after checking the key; ReviewInputError (400/404) otherwise."""
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise ReviewInputError("give the image as a non-empty string (its path within the data folder)")
        if "\x00" in key or "\\" in key or key.startswith("/") or ".." in key.split("/") or ":" in key.split("/")[0]:
            raise ReviewInputError(f"image {key[:200]!r}: only paths inside the data folder are allowed "
                                   "(no '..', no absolute path)")
        found = self.items.get(key)
        if found is None:
            raise ReviewInputError(f"image {key[:200]!r} is not in this run's data or to-label list", status=404)
        return found

    def probs_of(self, it: Item) -> tuple[np.ndarray, str]:
        """(probabilities, kind): out-of-sample when saved, else the model's (in-sample for training images)."""
        if it.probs is not None:
            return it.probs, "out-of-sample"
        if it.key not in self._model_probs:
            pred = self.predictor.predict([it.path])[0]
            if pred.error:
                raise ReviewInputError(f"{it.key}: cannot read the image ({pred.error})", status=422)
            self._model_probs[it.key] = np.array([pred.probs[n] for n in self.labels.names])
        return self._model_probs[it.key], ("trained on it" if it.split == "train" else "model")

    @property
    def predictor(self):
        if self._predictor is None:
            self._predictor = Predictor.load(self.run_dir)
        return self._predictor

    def suggested(self, it: Item) -> list[str]:
        """The labels `accept` takes: suggest's guess, else the model's decision."""
        if it.guess is not None:
            return list(it.guess)
        row = self._pred.get(it.key)
        if row is None:
            probs, _ = self.probs_of(it)
            row = decisions(probs[None], self.labels, self.thresholds, self.run.meta.at_least_one)[0]
        return [self.labels.names[k] for k in np.flatnonzero(row)]

    def given(self, it: Item) -> list[str] | None:
        return None if it.given is None else [self.labels.names[k] for k in np.flatnonzero(it.given)]

    def current(self, it: Item) -> tuple[list[str] | None, bool]:
        """(labels after the review, excluded?): the latest decision applied to the given labels."""
        d = self.log.get(it.key)
        if d is None:
            return self.given(it), False
        if d["action"] == "exclude":
            return self.given(it), True
        if d["action"] == "correct":
            return (self.given(it) if it.given is not None else list(it.guess or [])), False
        return list(d.get("labels") or []), False

    def detail(self, key: Any) -> dict[str, Any]:
        it = self.item(key)
        probs, kind = self.probs_of(it)
        names = self.labels.names
        labels, excluded = self.current(it)
        return {"id": it.key, "split": it.split, "given": self.given(it), "suggested": self.suggested(it),
                "probs": {n: round(float(v), 4) for n, v in zip(names, probs)}, "probs_kind": kind,
                "decision": self.log.get(it.key), "labels": labels, "excluded": excluded}

    # ------------------------------------------------------------------ decisions

    def decide(self, body: Any, queue: str | None = None) -> dict[str, Any]:
        """Check a decision from a client and append it to the log. Refusals change nothing."""
        if not isinstance(body, dict):
            raise ReviewInputError("send a JSON object: {\"image\": ..., \"action\": ..., \"labels\": [...]}", 422)
        unknown = set(body) - {"image", "action", "labels", "queue"}
        if unknown:
            raise ReviewInputError(f"unknown field(s) {sorted(unknown)[:5]}; send image, action, labels, queue", 422)
        it = self.item(body.get("image"))
        action = body.get("action")
        if action not in ACTIONS:
            raise ReviewInputError(f"action {str(action)[:50]!r} is not known; use one of {', '.join(ACTIONS)}"
                                   + did_you_mean(str(action), ACTIONS), 422)
        queue = body.get("queue")
        if queue is not None and queue not in QUEUES:
            raise ReviewInputError(f"queue {str(queue)[:50]!r} is not known; use one of {', '.join(QUEUES)}", 422)
        rec: dict[str, Any] = {"image": it.key, "path": str(it.path), "action": action, "queue": queue,
                               "given": self.given(it)}
        if action == "edit":
            rec["labels"] = self._check_labels(body.get("labels"))
        elif action == "accept":
            rec["labels"] = self._check_labels(self.suggested(it))
        elif body.get("labels") not in (None, []):
            raise ReviewInputError(f"action {action!r} takes no labels; use 'edit' to set labels", 422)
        return self.log.append(rec, who=self.who)

    def _check_labels(self, labels: Any) -> list[str]:
        names = self.labels.names
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels) or len(labels) > len(names):
            raise ReviewInputError(f"labels must be a list of label names (at most {len(names)})", 422)
        for x in labels:
            if x not in names:
                raise ReviewInputError(f"unknown label {x[:100]!r}; known: {', '.join(names)}"
                                       + did_you_mean(x, names), 422)
        if len(set(labels)) != len(labels):
            raise ReviewInputError("a label is given twice", 422)
        if not self.labels.multilabel and len(labels) != 1:
            raise ReviewInputError(f"this is a multi-class task: pick exactly one label, got {len(labels)}", 422)
        return [n for n in names if n in labels]  # in the model's order

    def overview(self) -> dict[str, Any]:
        """Labels, task, thresholds and every queue with each item's state, for the page."""
        out = {}
        for name, items in self.queues.items():
            title, what = QUEUES[name]
            out[name] = {"title": title, "help": what, "items": [
                dict(q, done=(d := self.log.get(q["id"])) is not None, action=d["action"] if d else None)
                for q in items]}
        return {"run": str(self.run_dir), "data": str(self.samples.origin), "task": self.labels.task,
                "labels": list(self.labels.names), "who": self.who, "decisions": len(self.log.latest),
                "thresholds": ({n: round(float(t), 4) for n, t in zip(self.labels.names, self.thresholds)}
                               if self.labels.multilabel else None),
                "issue_method": self.issue_method, "queues": out}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
