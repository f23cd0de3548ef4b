"""The ``annotations`` format: annotations/<label>.txt (image ids or names, one a line) + images/ -> multilabel."""
from __future__ import annotations

import os
from pathlib import Path

from labelwise.data.samples import Samples
from labelwise.data.sources.base import (IMAGE_EXTENSIONS, LoadRequest, ext_rank, hidden, is_image,
                                         register_format)
from labelwise.errors import DataError
from labelwise.labels import LabelSpace


def detect_annotations(data: Path, group_by: str | None) -> str | None:
    return "annotations" if data.is_dir() and (data / "annotations").is_dir() else None


@register_format("annotations", "annotations/<label>.txt listing image ids + images/ -> multi-label",
                 detect=detect_annotations, rank=10)
def load_annotations(req: LoadRequest) -> tuple[Samples, list[Path]]:
    if not req.data.is_dir():
        raise DataError(f"{req.data}: the annotations format needs a folder holding annotations/ and images/")
    return _load_annotations(req.data, req.images), [(req.images or req.data / "images").resolve()]


def _load_annotations(root: Path, image_dir: Path | None) -> Samples:
    import numpy as np

    ann_dir = root / "annotations"
    image_dir = image_dir if image_dir is not None else root / "images"
    if not ann_dir.is_dir():
        raise DataError(f"{root}: no annotations/ folder; expected annotations/<label>.txt files")
    if not image_dir.is_dir():
        raise DataError(f"{root}: annotations/ has no images/ folder beside it; add it or pass images=")
    label_files = sorted(p for p in ann_dir.iterdir()
                         if p.suffix.lower() == ".txt" and p.is_file() and not hidden(p.name))
    if not label_files:
        raise DataError(f"{ann_dir}: no <label>.txt files; each should list the images with that label")
    base = image_dir.resolve()
    names = sorted(e.name for e in os.scandir(image_dir) if e.is_file() and is_image(e.name) and not hidden(e.name))
    if not names:
        raise DataError(f"{image_dir}: no images ({' '.join(IMAGE_EXTENSIONS)})")
    lookup = _id_index(names)
    row = {n: i for i, n in enumerate(names)}
    targets = np.zeros((len(names), len(label_files)), np.uint8)
    for c, label_file in enumerate(label_files):
        for line, entry in _label_lines(label_file):
            name = lookup.get(entry) or lookup.get(os.path.basename(entry.replace("\\", "/")))
            if name is None:
                raise DataError(f"{label_file}: line {line}: {entry!r} matches no image in {image_dir}; "
                                f"fix the id or add the image")
            targets[row[name], c] = 1
    labels = LabelSpace(tuple(p.stem for p in label_files), "multilabel")
    return Samples([base / n for n in names], targets, labels, "annotations", root.resolve())


def _id_index(names: list[str]) -> dict[str, str]:
    """Every way a label file may name an image -> its file name: "im12.jpg", "im12", "12".

    Built once, so 20,000 ids cost 20,000 dict look-ups, not directory scans. Exact stems win
    over "im"-stripped ones ("12" is 12.jpg when both 12.jpg and im12.jpg exist). Only digits
    count as a bare id, so a typo like "age5" cannot quietly label image5.jpg.
    """
    index: dict[str, str] = {}
    for n in names:  # weakest first, so stronger keys overwrite
        stem = os.path.splitext(n)[0]
        if stem.startswith("im") and stem[2:].isdigit():
            index.setdefault(stem[2:], n)
    for n in sorted(names, key=ext_rank, reverse=True):
        index[os.path.splitext(n)[0]] = n
    for n in names:
        index[n] = n
    return index


def _label_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    return [(i, s.strip()) for i, s in enumerate(text.splitlines(), 1) if s.strip() and not s.strip().startswith("#")]
