"""The ``folder`` format: root/<label>/**/*.jpg, one class per folder -> multiclass."""
from __future__ import annotations

import os
from pathlib import Path

from labelwise.data.samples import Samples
from labelwise.data.sources.base import IMAGE_EXTENSIONS, LAYOUTS, LoadRequest, hidden, is_image, register_format
from labelwise.errors import ConfigError, DataError
from labelwise.labels import LabelSpace


def detect_folder(data: Path, group_by: str | None) -> str | None:
    """The catch-all, tried last: a folder that is nothing else must hold class folders (else a DataError
    that explains the layouts)."""
    if not data.is_dir():
        return None
    class_folders(data)
    return "folder"


@register_format("folder", "class folders: DATA/<label>/**/*.jpg -> multi-class", detect=detect_folder, rank=100)
def load_folder(req: LoadRequest) -> tuple[Samples, list[Path]]:
    if req.images is not None:
        raise ConfigError("images= applies to CSV and annotations data, not to class folders")
    if not req.data.is_dir():
        raise DataError(f"{req.data}: the folder format needs a folder of class folders, not a file")
    samples = _load_folder(req.data)
    return samples, [samples.origin]  # type: ignore[list-item]


def _load_folder(root: Path) -> Samples:
    import numpy as np

    base = root.resolve()
    folders = class_folders(root)
    paths: list[Path] = []
    index: list[int] = []
    for i, (label, files) in enumerate(folders):
        paths += [base / label / rel for rel in files]
        index += [i] * len(files)
    labels = LabelSpace(tuple(label for label, _ in folders), "multiclass")
    targets = np.zeros((len(paths), len(labels)), np.uint8)
    targets[np.arange(len(paths)), index] = 1
    return Samples(paths, targets, labels, "folder", base)


def class_folders(root: Path) -> list[tuple[str, list[str]]]:
    """[(label, sorted image paths relative to its folder)], sorted by label; validates the layout."""
    entries = sorted((e for e in os.scandir(root) if not hidden(e.name)), key=lambda e: e.name)
    loose = [e.name for e in entries if e.is_file() and is_image(e.name)]
    folders = [(e.name, _images_under(Path(e.path))) for e in entries if e.is_dir()]
    if not folders:
        found = f"{len(loose)} images but no class folders" if loose else "no images"
        raise DataError(f"{root}: found {found}; expected {LAYOUTS}")
    if [name for name, _ in folders] == ["images"]:
        raise DataError(f"{root}: found an images/ folder but no labels: add a CSV (image,tags) "
                        f"or an annotations/ folder beside it, or sort the images into class folders")
    if loose:
        raise DataError(f"{root}: {len(loose)} images (e.g. {loose[0]}) sit beside the class folders "
                        f"and have no label; move them into a class folder or delete them")
    empty = [name for name, files in folders if not files]
    if empty:
        raise DataError(f"{root}: class folder {empty[0]!r} has no images ({' '.join(IMAGE_EXTENSIONS)}); "
                        f"add images or remove the folder")
    return folders


def _images_under(folder: Path) -> list[str]:
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not hidden(d)]
        rel = os.path.relpath(parent, folder)
        found += [f if rel == "." else os.path.join(rel, f) for f in files if is_image(f) and not hidden(f)]
    return sorted(found)
