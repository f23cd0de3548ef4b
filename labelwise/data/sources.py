"""Data formats people actually have -> Samples. Auto-detected; nothing is decoded here.

Layouts (``data`` is a folder or a CSV file):

* ``folder``       root/<label>/**/*.jpg                         -> multiclass
* ``csv-tags``     labels.csv (image,tags "a b c") + images/     -> multilabel
* ``csv-onehot``   labels.csv (image,a,b,c with 0/1) + images/   -> multilabel
* ``annotations``  annotations/<label>.txt (ids or names) + images/ -> multilabel

Image names in a CSV are looked up beside the CSV, then in images/ beside it (or only in the
``images=`` folder when given), with or without an extension. Only existence is checked here;
unreadable images are found when they are decoded.

Groups (``group_by=``, the CLI's ``--group-by``): images sharing a group key never cross a split.
A CSV column of that name gives the key (and is not a label column); anything else is a regular
expression searched in each image's path relative to its folder, with forward slashes
(``cat/img_0012_aug3.jpg`` for class folders, ``img_0012_aug3.jpg`` for a CSV's images/): the
first capture group, or the whole match, is the key, e.g. ``group_by="img_([0-9]+)"``.

>>> samples = load_samples("planet/train.csv")          # doctest: +SKIP
>>> samples.source, samples.labels.task
('csv-tags', 'multilabel')
"""
from __future__ import annotations

import csv
import difflib
import os
import re
from pathlib import Path

import numpy as np

from labelwise.data.images import IMAGE_EXTENSIONS
from labelwise.data.samples import Samples
from labelwise.errors import ConfigError, DataError
from labelwise.labels import LabelSpace

FORMATS: tuple[str, ...] = ("auto", "folder", "csv-tags", "csv-onehot", "annotations")

IMAGE_COLUMNS = ("image", "image_name", "image_id", "filename", "file_name", "file", "id", "path", "img")
TAG_COLUMNS = ("tags", "labels", "label", "categories", "category", "classes", "class")
PREFERRED_CSVS = ("labels.csv", "train.csv")
_LAYOUTS = ("class folders (DATA/<label>/*.jpg), a CSV beside an images/ folder, "
            "or an annotations/ folder beside an images/ folder")


def detect_format(data: Path, group_by: str | None = None) -> str:
    """Tell the layout of a folder or CSV file: one of FORMATS without "auto".

    A folder is checked in this order: an annotations/ folder, a CSV file, class folders.
    ``group_by``: a CSV column of that name holds groups, so it is not taken for a label column."""
    data = _existing(data)
    if data.is_file():
        return _detect_csv(data, group_by)
    if (data / "annotations").is_dir():
        return "annotations"
    csvs = _csv_files(data)
    if csvs:
        return _detect_csv(_pick_csv(data, csvs), group_by)
    _class_folders(data)  # raises a DataError that explains the layouts when there are none
    return "folder"


def load_samples(data: Path | str, fmt: str = "auto", images: Path | str | None = None,
                 delimiter: str = "auto", group_by: str | None = None) -> Samples:
    """Read a dataset's image paths and labels (see the module docstring for the layouts).

    fmt: one of FORMATS; images: the image folder for CSV/annotations data (overrides the
    default lookup); delimiter: what separates tags in a csv-tags cell ("auto": runs of whitespace,
    commas, semicolons or |; " ": any whitespace; else that exact string);
    group_by: a CSV column or a regular expression giving each image's group (``Samples.groups``).
    """
    if group_by is not None and not group_by.strip():
        raise ConfigError("--group-by is empty; give a CSV column name or a regular expression")
    samples, folders = _load(data, fmt, images, delimiter, group_by)
    if group_by is not None and samples.groups is None:
        samples.groups = _regex_groups(samples, folders, group_by)
    return samples


def _load(data: Path | str, fmt: str, images: Path | str | None, delimiter: str,
          group_by: str | None) -> tuple[Samples, list[Path]]:
    """(samples, the folders their paths are relative to, deepest first) for any format."""
    if fmt not in FORMATS:
        hint = difflib.get_close_matches(fmt, FORMATS, n=1)
        raise ConfigError(f"unknown data format {fmt!r}; choose one of {', '.join(FORMATS)}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    data = _existing(data)
    image_dir = _existing(images, "the images folder") if images is not None else None
    if fmt == "auto":
        fmt = detect_format(data, group_by)
    if fmt == "folder":
        if image_dir is not None:
            raise ConfigError("images= applies to CSV and annotations data, not to class folders")
        if not data.is_dir():
            raise DataError(f"{data}: the folder format needs a folder of class folders, not a file")
        samples = _load_folder(data)
        return samples, [samples.origin]  # type: ignore[list-item]
    if fmt == "annotations":
        if not data.is_dir():
            raise DataError(f"{data}: the annotations format needs a folder holding annotations/ and images/")
        return _load_annotations(data, image_dir), [(image_dir or data / "images").resolve()]
    csv_path = data if data.is_file() else _pick_csv(data, _csv_files(data))
    dirs = [image_dir] if image_dir is not None else [csv_path.parent, csv_path.parent / "images"]
    folders = sorted((d.resolve() for d in dirs), key=lambda d: len(d.parts), reverse=True)
    return _load_csv(csv_path, fmt, image_dir, delimiter, origin=data, group_by=group_by), folders


# --------------------------------------------------------------------------- class folders


def _load_folder(root: Path) -> Samples:
    base = root.resolve()
    folders = _class_folders(root)
    paths: list[Path] = []
    index: list[int] = []
    for i, (label, files) in enumerate(folders):
        paths += [base / label / rel for rel in files]
        index += [i] * len(files)
    labels = LabelSpace(tuple(label for label, _ in folders), "multiclass")
    targets = np.zeros((len(paths), len(labels)), np.uint8)
    targets[np.arange(len(paths)), index] = 1
    return Samples(paths, targets, labels, "folder", base)


def _class_folders(root: Path) -> list[tuple[str, list[str]]]:
    """[(label, sorted image paths relative to its folder)], sorted by label; validates the layout."""
    entries = sorted((e for e in os.scandir(root) if not _hidden(e.name)), key=lambda e: e.name)
    loose = [e.name for e in entries if e.is_file() and _is_image(e.name)]
    folders = [(e.name, _images_under(Path(e.path))) for e in entries if e.is_dir()]
    if not folders:
        found = f"{len(loose)} images but no class folders" if loose else "no images"
        raise DataError(f"{root}: found {found}; expected {_LAYOUTS}")
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
        dirs[:] = [d for d in dirs if not _hidden(d)]
        rel = os.path.relpath(parent, folder)
        found += [f if rel == "." else os.path.join(rel, f) for f in files if _is_image(f) and not _hidden(f)]
    return sorted(found)


# --------------------------------------------------------------------------- CSV


def _load_csv(csv_path: Path, fmt: str, image_dir: Path | None, delimiter: str, origin: Path,
              group_by: str | None = None) -> Samples:
    rows = _read_csv(csv_path)
    header = rows[0][1]
    group_col = _group_column(header, group_by)
    exclude = frozenset() if group_col is None else frozenset({group_col})
    kind, image_col, tag_col = _csv_kind(csv_path, rows, None if fmt == "auto" else fmt, exclude)
    label_cols = [i for i in range(len(header)) if i != image_col and i not in exclude]
    dirs = [image_dir] if image_dir is not None else [csv_path.parent, csv_path.parent / "images"]
    finder = _ImageFinder(dirs)

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


def _detect_csv(csv_path: Path, group_by: str | None) -> str:
    rows = _read_csv(csv_path)
    col = _group_column(rows[0][1], group_by)
    return _csv_kind(csv_path, rows, exclude=frozenset() if col is None else frozenset({col}))[0]


def _group_column(header: list[str], group_by: str | None) -> int | None:
    """The index of the column ``group_by`` names (exact, else the one case-insensitive match), or None."""
    if group_by is None:
        return None
    if group_by in header:
        return header.index(group_by)
    folded = [i for i, h in enumerate(header) if h.casefold() == group_by.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}


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


def _read_csv(path: Path) -> list[tuple[int, list[str]]]:
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


def _csv_kind(path: Path, rows: list[tuple[int, list[str]]], want: str | None = None,
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


AUTO_TAG_SEPARATORS = re.compile(r"[\s,;|]+")  # how multi-label exports separate tags, in practice


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


def _csv_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file() and not _hidden(p.name))


def _pick_csv(folder: Path, csvs: list[Path]) -> Path:
    if len(csvs) == 1:
        return csvs[0]
    for preferred in PREFERRED_CSVS:
        for p in csvs:
            if p.name.lower() == preferred:
                return p
    if not csvs:
        raise DataError(f"{folder}: no CSV file here; expected {_LAYOUTS}")
    raise DataError(f"{folder}: several CSV files ({', '.join(p.name for p in csvs)}) and none is named "
                    f"{' or '.join(PREFERRED_CSVS)}; pass the CSV file itself as DATA")


class _ImageFinder:
    """Resolves image names from a CSV against a few folders, listing each folder only once."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = [d.resolve() for d in dirs]
        self._listing: dict[Path, tuple[set[str], dict[str, str]]] = {}

    def find(self, name: str) -> Path | None:
        name = name.replace("\\", "/")  # a CSV written on Windows
        if "/" in name:
            return self._find_nested(name)
        for d in self.dirs:
            files, stems = self._list(d)
            if _is_image(name) and name in files:
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
                        if old is None or _ext_rank(e.name) < _ext_rank(old):
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


def _ext_rank(name: str) -> int:
    return IMAGE_EXTENSIONS.index(os.path.splitext(name)[1].lower())


# --------------------------------------------------------------------------- annotations/


def _load_annotations(root: Path, image_dir: Path | None) -> Samples:
    ann_dir = root / "annotations"
    image_dir = image_dir if image_dir is not None else root / "images"
    if not ann_dir.is_dir():
        raise DataError(f"{root}: no annotations/ folder; expected annotations/<label>.txt files")
    if not image_dir.is_dir():
        raise DataError(f"{root}: annotations/ has no images/ folder beside it; add it or pass images=")
    label_files = sorted(p for p in ann_dir.iterdir()
                         if p.suffix.lower() == ".txt" and p.is_file() and not _hidden(p.name))
    if not label_files:
        raise DataError(f"{ann_dir}: no <label>.txt files; each should list the images with that label")
    base = image_dir.resolve()
    names = sorted(e.name for e in os.scandir(image_dir) if e.is_file() and _is_image(e.name) and not _hidden(e.name))
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
    for n in sorted(names, key=_ext_rank, reverse=True):
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


# --------------------------------------------------------------------------- groups by regex


def _regex_groups(samples: Samples, folders: list[Path], group_by: str) -> np.ndarray:
    """Each image's group key: the first capture group (or the whole match) of ``group_by``
    searched in its path relative to ``folders`` (the deepest folder holding it)."""
    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        raise ConfigError(f"--group-by {group_by!r} is not {_not_column(samples)} and not a valid regular "
                          f"expression ({exc}); name a column or fix the expression") from None
    names = [_relative(p, folders) for p in samples.paths]
    keys: list[str] = []
    missed: list[str] = []
    for name in names:
        m = pattern.search(name)
        if m is None:
            missed.append(name)
            continue
        key = next((g for g in m.groups() if g), None) or m.group(0)
        keys.append(key)
    if len(missed) == len(names):
        raise DataError(f"--group-by {group_by!r} is not {_not_column(samples)}, so it was used as a regular "
                        f"expression, and it matches none of the {len(names)} image paths (e.g. {names[0]!r}); "
                        f"name a column or write an expression that finds the group in the path")
    if missed:
        raise DataError(f"--group-by {group_by!r}: the regular expression does not match image {missed[0]!r} "
                        f"({len(missed)} of {len(names)} images unmatched); every image needs a group: "
                        f"make the expression match them too (e.g. with an optional part, '(_aug\\d+)?')")
    if any(not k for k in keys):
        empty = names[keys.index("")]
        raise DataError(f"--group-by {group_by!r} matches an empty string in image {empty!r}; the group key "
                        f"must not be empty: use a capture group that takes at least one character")
    return np.array(keys)


def _not_column(samples: Samples) -> str:
    """What --group-by failed to be as a column, for error messages: 'a column of X (columns: ...)'."""
    if not samples.source.startswith("csv") or samples.origin is None:
        return f"a CSV column ({samples.source or 'this'} data has no CSV)"
    origin = samples.origin
    csv_path = origin if origin.is_file() else _pick_csv(origin, _csv_files(origin))
    return f"a column of {csv_path} (columns: {', '.join(_read_csv(csv_path)[0][1])})"


def _relative(path: Path, folders: list[Path]) -> str:
    for d in folders:
        try:
            return path.relative_to(d).as_posix()
        except ValueError:
            continue
    return path.name


# --------------------------------------------------------------------------- helpers


def _existing(path: Path | str | None, what: str = "the data path") -> Path:
    path = Path(path)  # type: ignore[arg-type]
    if not path.exists():
        raise DataError(f"{path}: {what} does not exist; check the path")
    return path


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")  # .DS_Store, .ipynb_checkpoints, __MACOSX
