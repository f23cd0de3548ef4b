"""Atomic file writes and small JSON/CSV helpers: a crash never leaves a half-written file."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

from labelwise.errors import BundleError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a crash never leaves half a file."""
    with _atomic(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object; BundleError naming the file otherwise."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return d


@contextmanager
def _atomic(path: str | Path, mode: str) -> Iterator[IO]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_text_stream(path: str | Path) -> AbstractContextManager[TextIO]:
    """A text file written as results stream in (memory stays flat), that appears under ``path`` only
    when complete: rows go to a temporary file beside it, renamed into place at the end (as
    atomic_write_text does for whole strings); on an error it is removed."""
    return _atomic(path, "w")
