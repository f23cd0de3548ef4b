"""Reading a labels CSV, shared by the csv-tags and csv-onehot formats: the field separator, the
header checks, which columns hold the image, the tags or the 0/1 labels, and finding each image."""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from labelwise.data.sources.base import IMAGE_EXTENSIONS, LAYOUTS, ext_rank, hidden, is_image
from labelwise.errors import ConfigError, DataError

IMAGE_COLUMNS = ("image", "image_name", "image_id", "filename", "file_name", "file", "id", "path", "img")
TAG_COLUMNS = ("tags", "labels", "label", "categories", "category", "classes", "class")
PREFERRED_CSVS = ("labels.csv", "train.csv")
SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}


def group_column(header: list[str], group_by: str | None) -> int | None:
    """The index of the column ``group_by`` names (exact, else the one case-insensitive match), or None."""
    if group_by is None:
        return None
    if group_by in header:
        return header.index(group_by)
    folded = [i for i, h in enumerate(header) if h.casefold() == group_by.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def _field_separator(f) -> str:
    """The CSV's field separator, from its first non-blank line (the header): the most frequent of comma,
    semicolon and tab; comma when it has none (a one-column CSV). Spreadsheets in many locales save
    CSVs with semicolons, and TSV exports use tabs. Rewinds ``f``."""
    start = f.tell()
    header = next((line for line in f if line.strip()), "")
    f.seek(start)
    counts = {sep: header.count(sep) for sep in SEPARATOR_NAMES}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def read_csv(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank rows with their 1-based line numbers (header = line 1); the header is stripped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            separator = _field_separator(f)
            reader = csv.reader(f, delimiter=separator)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the CSV as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc}); check the quoting") from None
    if not rows:
        raise DataError(f"{path}: the CSV is empty; expected a header (e.g. image,tags) and one row per image")
    header = [h.strip() for h in rows[0][1]]
    if any(not h for h in header):
        raise DataError(f"{path}: line {rows[0][0]}: column {header.index('') + 1} of the header has no name")
    dup = next((h for i, h in enumerate(header) if h in header[:i]), None)
    if dup is not None:
        raise DataError(f"{path}: line {rows[0][0]}: the header names column {dup!r} twice")
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"{path}: line {line}: {len(row)} cells but the header has {len(header)} "
                            f"columns ({', '.join(header)}); check the {SEPARATOR_NAMES[separator]} and quoting")
    rows[0] = (rows[0][0], header)
    return rows


def csv_kind(path: Path, rows: list[tuple[int, list[str]]], want: str | None = None,
              exclude: frozenset[int] = frozenset()) -> tuple[str, int, int]:
    """(format, image column, tags column or -1) for a parsed CSV; ``want`` forces the format.

    ``exclude``: columns that are neither the image nor a label (the group column)."""
    header = rows[0][1]
    lower = [h.lower() if i not in exclude else None for i, h in enumerate(header)]
    image_col = next((lower.index(c) for c in IMAGE_COLUMNS if c in lower), None)
    found = ", ".join(repr(h) for h in header)
    if image_col is None and exclude and any(header[i].lower() in IMAGE_COLUMNS for i in exclude):
        raise ConfigError(f"{path}: --group-by names the image column {header[min(exclude)]!r}; name the column "
                          f"that holds the group (patient, scene, original image), or a regular expression")
    if image_col is None:
        raise DataError(f"{path}: line 1: no image column among the columns found ({found}); "
                        f"name it one of: {', '.join(IMAGE_COLUMNS)}")
    others = [i for i in range(len(header)) if i != image_col and i not in exclude]
    if not others:
        raise DataError(f"{path}: line 1: only an image column ({found}); add a tags column "
                        f"or one 0/1 column per label")
    tag_col = next((lower.index(c) for c in TAG_COLUMNS if c in lower and lower.index(c) != image_col), None)
    if tag_col is None and len(others) == 1:
        tag_col = others[0]
    bad = _first_non_binary(rows, others)
    if want == "csv-onehot" or (want is None and bad is None):
        if bad is not None:
            line, col, value = bad
            raise DataError(f"{path}: line {line}: column {header[col]!r} has {value!r}; a one-hot CSV "
                            f"needs 0 or 1 in every label column")
        return "csv-onehot", image_col, -1
    if tag_col is None:
        if want == "csv-tags":
            raise DataError(f"{path}: line 1: no tags column among the columns found ({found}); "
                            f"name it one of: {', '.join(TAG_COLUMNS)}")
        line, col, value = bad  # type: ignore[misc]
        raise DataError(f"{path}: line {line}: column {header[col]!r} has {value!r}, so this is not a "
                        f"one-hot CSV (0/1 per label), and no tags column was found among ({found}); "
                        f"name the tags column one of: {', '.join(TAG_COLUMNS)}")
    return "csv-tags", image_col, tag_col


def _first_non_binary(rows: list[tuple[int, list[str]]], cols: list[int]) -> tuple[int, int, str] | None:
    for line, row in rows[1:]:
        for c in cols:
            if row[c].strip() not in ("0", "1"):
                return line, c, row[c]
    return None


def csv_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file() and not hidden(p.name))


def pick_csv(folder: Path, csvs: list[Path]) -> Path:
    if len(csvs) == 1:
        return csvs[0]
    for preferred in PREFERRED_CSVS:
        for p in csvs:
            if p.name.lower() == preferred:
                return p
    training = [p for p in csvs if p.name.lower().startswith("train")]  # Planet: train_v2.csv, sample_submission_v2.csv
    if len(training) == 1:
        return training[0]
    if not csvs:
        raise DataError(f"{folder}: no CSV file here; expected {LAYOUTS}")
    raise DataError(f"{folder}: several CSV files ({', '.join(p.name for p in csvs)}) and none is named "
                    f"{' or '.join(PREFERRED_CSVS)}; pass the CSV file itself as DATA")


def default_image_dirs(csv_path: Path) -> list[Path]:
    """Where a CSV's image names are looked up: beside it, in images/, then in folders named after it, e.g.
    train/, train-jpg/, train-tif/, train-tif-v2/ beside train.csv or train_v2.csv (Planet's Kaggle layout)."""
    parent = csv_path.parent
    prefix = re.split(r"[-_. ]", csv_path.stem.lower())[0]
    named = sorted(d for d in parent.iterdir() if prefix and d.is_dir() and not hidden(d.name)
                   and (d.name.lower() == prefix or d.name.lower().startswith((prefix + "-", prefix + "_"))))
    return [parent, parent / "images", *named]


class ImageFinder:
    """Resolves image names from a CSV against a few folders, listing each folder only once."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = [d.resolve() for d in dirs]
        self._listing: dict[Path, tuple[set[str], dict[str, str]]] = {}

    def holders(self, name: str) -> list[Path]:
        """Every folder that has the image: to say which one was used when several do."""
        return [d for d in self.dirs if ImageFinder([d]).find(name) is not None]

    def find(self, name: str) -> Path | None:
        name = name.replace("\\", "/")  # a CSV written on Windows
        if "/" in name:
            return self._find_nested(name)
        for d in self.dirs:
            files, stems = self._list(d)
            if is_image(name) and name in files:
                return d / name
            if name in stems:  # "x" -> x.jpg, also when a file named plain "x" exists
                return d / stems[name]
            if name in files:  # no image extension: the decoder sniffs the content anyway
                return d / name
        return None

    def _list(self, d: Path) -> tuple[set[str], dict[str, str]]:
        if d not in self._listing:
            files: set[str] = set()
            stems: dict[str, str] = {}  # "x" -> "x.jpg": names given without extension
            if d.is_dir():
                for e in os.scandir(d):
                    if not e.is_file():
                        continue
                    files.add(e.name)
                    stem, ext = os.path.splitext(e.name)
                    if ext.lower() in IMAGE_EXTENSIONS:
                        # Deterministic when x.jpg and x.png both exist: first by extension order.
                        old = stems.get(stem)
                        if old is None or ext_rank(e.name) < ext_rank(old):
                            stems[stem] = e.name
            self._listing[d] = (files, stems)
        return self._listing[d]

    def _find_nested(self, name: str) -> Path | None:
        for d in self.dirs:
            path = d / name
            if path.is_file():
                return path
            for ext in IMAGE_EXTENSIONS:
                for candidate in (path.with_name(path.name + ext), path.with_name(path.name + ext.upper())):
                    if candidate.is_file():
                        return candidate
        return None
