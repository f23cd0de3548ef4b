"""The review's decisions: one JSON object per line in RUN/review/decisions.jsonl, append-only.

Each line is written with a single ``write`` on a file opened with O_APPEND and then fsynced, so
a killed server or a closed browser loses at most the decision being written, and two writers
never interleave inside a line. A torn last line (power cut mid-write) is skipped on reading.
The latest decision for an image wins; ``reset`` withdraws it.

>>> log = DecisionLog(Path("runs/demo/review/decisions.jsonl"))               # doctest: +SKIP
>>> log.append({"image": "cat/1.jpg", "action": "exclude"}, who="ana")      # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ACTIONS = ("accept", "edit", "exclude", "correct", "reset")
# accept: take the suggested labels; edit: the labels sent; exclude: leave the image out of the
# export; correct: the given labels are right; reset: withdraw the image's decision.
FILE_NAME = "decisions.jsonl"


class DecisionLog:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.latest: dict[str, dict[str, Any]] = {}  # image key -> its latest decision (reset removes)
        self.count = 0  # lines read or written
        self.torn = 0  # unreadable lines skipped on reading
        self._read()

    def _read(self) -> None:
        if not self.path.is_file():
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    self.torn += 1
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("image"), str) and rec.get("action") in ACTIONS:
                    self._apply(rec)
                else:
                    self.torn += 1

    def _apply(self, rec: dict[str, Any]) -> None:
        self.count += 1
        if rec["action"] == "reset":
            self.latest.pop(rec["image"], None)
        else:
            self.latest[rec["image"]] = rec

    def append(self, rec: dict[str, Any], who: str) -> dict[str, Any]:
        """Stamp ``rec`` with who and when, write it as one line, then apply it. Returns the record."""
        rec = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "who": who, **rec}
        data = (json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size and not _ends_with_newline(fd):
                    os.write(fd, b"\n")  # a torn line from a crash must not swallow this record
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._apply(rec)
        return rec

    def get(self, key: str) -> dict[str, Any] | None:
        return self.latest.get(key)


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return os.pread(fd, 1, size - 1) == b"\n"
