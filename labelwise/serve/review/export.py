"""Write the reviewed labels in the data's own format; the original files are never touched.

* csv-tags: the original CSV, row for row (every column kept, the separator too), with the tags
  cell rewritten; excluded images' rows left out.
* csv-onehot: likewise with the 0/1 label columns rewritten.
* folder / annotations data: a tags CSV ``image,tags`` with absolute image paths (class folders
  cannot hold a correction without moving files; ``labelwise train FILE`` reads the CSV).

Images labelled in the to-label queue are appended as new rows (absolute paths), so the export is
the dataset plus the new labels, ready to train on. ``FILE.summary.json`` beside it lists the
changes (relabelled, excluded, confirmed, added), each with who decided and when.

>>> summary = export_labels(session, Path("labels_fixed.csv"))     # doctest: +SKIP
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from labelwise.data.sources.csv_read import _field_separator, csv_files, csv_kind, group_column, pick_csv, read_csv
from labelwise.errors import ConfigError
from labelwise.io import atomic_write_text, write_json
from labelwise.serve.review.session import ReviewSession

MAX_LISTED = 200  # changes listed one by one in the summary; the counts are always complete


def export_labels(session: ReviewSession, out: str | Path) -> dict[str, Any]:
    """Write the corrected labels to ``out`` and the summary beside it; return the summary."""
    out = Path(out)
    originals = _original_files(session)
    if out.resolve() in originals or out.resolve() in {p.resolve() for p in session.samples.paths}:
        raise ConfigError(f"{out}: that is one of the original data files; export to a new file "
                          "(the originals are never modified)")
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"{out}: the export is a CSV file; give a name ending in .csv")
    fmt = session.samples.source
    if fmt in ("csv-tags", "csv-onehot"):
        text = _rewrite_csv(session, originals[0], fmt)
    else:
        text = _tags_csv(session)
    summary = summarize(session, out, fmt)
    atomic_write_text(out, text)
    write_json(summary_path(out), summary)
    return summary


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def _original_files(session: ReviewSession) -> list[Path]:
    origin = session.samples.origin
    if origin is None:
        return []
    if session.samples.source.startswith("csv"):
        csv_path = origin if origin.is_file() else pick_csv(origin, csv_files(origin))
        return [csv_path.resolve()]
    if session.samples.source == "annotations":
        return sorted(p.resolve() for p in (origin / "annotations").glob("*.txt"))
    return []


def _labels_by_row(session: ReviewSession) -> list[tuple[list[str], bool]]:
    """(labels, excluded) for every dataset image, in the order of the samples (= the CSV's rows)."""
    by_row: list[tuple[list[str], bool]] = [([], False)] * len(session.samples.paths)
    for it in session.items.values():
        if it.row is not None:
            labels, excluded = session.current(it)
            by_row[it.row] = (labels or [], excluded)
    return by_row


def _added(session: ReviewSession) -> list[tuple[Path, list[str]]]:
    """To-label images with a decision that gives them labels (not excluded)."""
    out = []
    for it in session.items.values():
        if it.row is None and session.log.get(it.key) is not None:
            labels, excluded = session.current(it)
            if not excluded and labels is not None:
                out.append((it.path, labels))
    return out


def _tag_delimiter(session: ReviewSession) -> str:
    d = str((session.run.config.get("data") or {}).get("delimiter") or "auto")
    return " " if d == "auto" or d.isspace() else d


def _rewrite_csv(session: ReviewSession, csv_path: Path, fmt: str) -> str:
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        separator = _field_separator(f)
    rows = read_csv(csv_path)
    header = rows[0][1]
    group_by = (session.run.config.get("data") or {}).get("group_by")
    group_col = group_column(header, group_by)
    exclude = frozenset() if group_col is None else frozenset({group_col})
    _, image_col, tag_col = csv_kind(csv_path, rows, fmt, exclude)
    body = rows[1:]
    by_row = _labels_by_row(session)
    if len(body) != len(by_row):
        raise ConfigError(f"{csv_path}: has {len(body)} rows but the data read has {len(by_row)} images; "
                          "was the CSV edited since the review started? Restart `labelwise review`.")
    delim = _tag_delimiter(session)
    label_cols = {header[i]: i for i in range(len(header)) if i != image_col and i not in exclude}
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=separator, lineterminator="\n")
    w.writerow(header)

    def fill(row: list[str], labels: list[str]) -> list[str]:
        row = list(row)
        if fmt == "csv-tags":
            row[tag_col] = delim.join(labels)
        else:
            for name, i in label_cols.items():
                row[i] = "1" if name in labels else "0"
        return row

    for (_, row), (labels, excluded) in zip(body, by_row):
        if not excluded:
            w.writerow(fill(row, labels))
    for path, labels in _added(session):
        row = [""] * len(header)
        row[image_col] = str(path)
        if group_col is not None:
            row[group_col] = path.stem  # a new image is its own group
        w.writerow(fill(row, labels))
    return buf.getvalue()


def _tags_csv(session: ReviewSession) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["image", "tags"])
    for path, (labels, excluded) in zip(session.samples.paths, _labels_by_row(session)):
        if not excluded:
            w.writerow([str(path), " ".join(labels)])
    for path, labels in _added(session):
        w.writerow([str(path), " ".join(labels)])
    return buf.getvalue()


def summarize(session: ReviewSession, out: Path, fmt: str) -> dict[str, Any]:
    """Counts and a list of the changes the export makes, with who decided each and when."""
    changes: dict[str, list[dict[str, Any]]] = {"relabelled": [], "excluded": [], "confirmed": [], "added": []}
    for key, d in session.log.latest.items():
        it = session.items.get(key)
        if it is None:  # decided on an image no longer in the data: nothing to export
            continue
        labels, excluded = session.current(it)
        given = session.given(it)
        entry = {"image": key, "who": d.get("who"), "time": d.get("time")}
        if excluded:
            changes["excluded"].append(entry | {"given": given})
        elif it.row is None:
            changes["added"].append(entry | {"labels": labels})
        elif labels != given:
            changes["relabelled"].append(entry | {"given": given, "labels": labels})
        else:
            changes["confirmed"].append(entry | {"labels": labels})
    n = len(session.samples.paths)
    counts = {k: len(v) for k, v in changes.items()}
    lines = [f"{out}: {n - counts['excluded']:,} of {n:,} images kept ({fmt} data, written as "
             f"{'the same CSV' if fmt.startswith('csv') else 'a tags CSV with absolute paths'})",
             f"{counts['relabelled']} relabelled, {counts['excluded']} excluded, {counts['confirmed']} confirmed "
             f"correct, {counts['added']} added from the to-label list"]
    return {"file": str(out), "format": fmt, "images_in": n, "images_out": n - counts["excluded"] + counts["added"],
            "counts": counts, "text": lines,
            "changes": {k: v[:MAX_LISTED] for k, v in changes.items()}}
