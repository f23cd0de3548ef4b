"""The ``csv-tags`` (image,tags "a b c") and ``csv-onehot`` (image,a,b,c with 0/1) formats -> multilabel.

Image names are looked up beside the CSV, then in images/ beside it, then in folders named after the
CSV (train-tif/ beside train_v2.csv: Planet's layout) — or only in the ``images=`` folder when given —
with or without an extension.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from labelwise.data.samples import Samples
from labelwise.data.sources.base import LoadRequest, register_format
from labelwise.data.sources.csv_read import (ImageFinder, csv_files, csv_kind, default_image_dirs, group_column,
                                             pick_csv, read_csv)
from labelwise.errors import DataError
from labelwise.labels import LabelSpace

log = logging.getLogger("labelwise")
AUTO_TAG_SEPARATORS = re.compile(r"[\s,;|]+")  # how multi-label exports separate tags, in practice


def detect_csv_data(data: Path, group_by: str | None) -> str | None:
    """csv-tags or csv-onehot for a CSV file, or a folder holding one; None for anything else."""
    if data.is_file():
        return detect_csv(data, group_by)
    csvs = csv_files(data)
    return detect_csv(pick_csv(data, csvs), group_by) if csvs else None


@register_format("csv-tags", "a CSV (image,tags \"a b c\") beside images/ -> multi-label", detect=detect_csv_data)
def load_csv_tags(req: LoadRequest) -> tuple[Samples, list[Path]]:
    return _load(req, "csv-tags")


@register_format("csv-onehot", "a CSV (image,a,b,c with 0/1) beside images/ -> multi-label")
def load_csv_onehot(req: LoadRequest) -> tuple[Samples, list[Path]]:
    return _load(req, "csv-onehot")


def _load(req: LoadRequest, fmt: str) -> tuple[Samples, list[Path]]:
    data = req.data
    csv_path = data if data.is_file() else pick_csv(data, csv_files(data))
    dirs = [req.images] if req.images is not None else default_image_dirs(csv_path)
    folders = sorted((d.resolve() for d in dirs), key=lambda d: len(d.parts), reverse=True)
    return _load_csv(csv_path, fmt, req.images, req.delimiter, origin=data, group_by=req.group_by), folders


def _load_csv(csv_path: Path, fmt: str, image_dir: Path | None, delimiter: str, origin: Path,
              group_by: str | None = None) -> Samples:
    import numpy as np

    rows = read_csv(csv_path)
    header = rows[0][1]
    group_col = group_column(header, group_by)
    exclude = frozenset() if group_col is None else frozenset({group_col})
    kind, image_col, tag_col = csv_kind(csv_path, rows, None if fmt == "auto" else fmt, exclude)
    label_cols = [i for i in range(len(header)) if i != image_col and i not in exclude]
    dirs = [image_dir] if image_dir is not None else default_image_dirs(csv_path)
    finder = ImageFinder(dirs)

    paths: list[Path] = []
    first_line: dict[Path, int] = {}
    missing: list[tuple[int, str]] = []
    tag_sets: list[set[str]] = []  # csv-tags
    bits: list[list[int]] = []  # csv-onehot
    groups: list[str] = []
    for line, row in rows[1:]:
        name = row[image_col].strip()
        if not name:
            raise DataError(f"{csv_path}: line {line}: the {header[image_col]!r} cell is empty; "
                            f"give each row an image name")
        path = finder.find(name)
        if path is None:
            missing.append((line, name))
            continue
        if path in first_line:
            raise DataError(f"{csv_path}: line {line}: image {name!r} is already listed on line "
                            f"{first_line[path]}; keep one row per image (with all its labels)")
        first_line[path] = line
        paths.append(path)
        if kind == "csv-tags":
            tag_sets.append(_tags(row[tag_col], delimiter))
        else:
            bits.append(_onehot(csv_path, line, header, row, label_cols))
        if group_col is not None:
            key = row[group_col].strip()
            if not key:
                raise DataError(f"{csv_path}: line {line}: the group column {header[group_col]!r} is empty for "
                                f"image {name!r}; give every row a group (an image of its own may use its name)")
            groups.append(key)
    if missing:
        line, name = missing[0]
        where = " or ".join(str(d) for d in dirs)
        raise DataError(f"{csv_path}: line {line}: image {name!r} not found in {where} "
                        f"({len(missing)} of {len(rows) - 1} rows point to no image); "
                        f"check the {header[image_col]!r} column or pass the image folder (images=/--images)")
    if not paths:
        raise DataError(f"{csv_path}: no data rows below the header; add one row per image")
    holders = finder.holders(rows[1][1][image_col].strip()) if image_dir is None else []
    if len(holders) > 1:  # Planet ships train-jpg/ and train-tif/ with the same names
        log.warning("%s: the images are in %s (the first of %s); pass --images to train on another folder",
                    csv_path, holders[0], ", ".join(str(h) for h in holders))

    if kind == "csv-tags":
        names = sorted({t for tags in tag_sets for t in tags})
        if not names:
            raise DataError(f"{csv_path}: no row has a tag in column {header[tag_col]!r}; "
                            f"check the column and the delimiter ({delimiter!r})")
        col = {n: i for i, n in enumerate(names)}
        targets = np.zeros((len(paths), len(names)), np.uint8)
        for r, tags in enumerate(tag_sets):
            targets[r, [col[t] for t in tags]] = 1
    else:
        names = [header[i] for i in label_cols]
        targets = np.array(bits, dtype=np.uint8).reshape(len(paths), len(names))
    return Samples(paths, targets, LabelSpace(tuple(names), "multilabel"), kind, origin.resolve(),
                   groups=np.array(groups) if group_col is not None else None)


def detect_csv(csv_path: Path, group_by: str | None) -> str:
    rows = read_csv(csv_path)
    col = group_column(rows[0][1], group_by)
    return csv_kind(csv_path, rows, exclude=frozenset() if col is None else frozenset({col}))[0]


def _tags(cell: str, delimiter: str) -> set[str]:
    if delimiter == "auto":
        parts = AUTO_TAG_SEPARATORS.split(cell)
    else:
        parts = cell.split() if delimiter.isspace() else cell.split(delimiter)
    return {p.strip() for p in parts if p.strip()}


def _onehot(path: Path, line: int, header: list[str], row: list[str], label_cols: list[int]) -> list[int]:
    out = []
    for i in label_cols:
        cell = row[i]
        value = cell.strip()
        if value not in ("0", "1"):
            raise DataError(f"{path}: line {line}: column {header[i]!r} has {cell!r}; "
                            f"a one-hot CSV needs 0 or 1 in every label column")
        out.append(int(value))
    return out
