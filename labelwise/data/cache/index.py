"""The sqlite index of one size directory and the pixel rows (pixels.u8) it points at.

An ``Index`` is open with its lock held: it looks up stat keys, digests and known failures, reads
hit rows back through a read-only memmap, and appends new rows (fsync first, then one transaction).
"""
from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from labelwise.data.cache.files import PIXELS, StatKey, file_size, fsync_dir

_SQL_CHUNK = 500  # parameters per IN (...) query (old sqlite builds allow 999)
_WRITE_CHUNK = 64 << 20  # bytes per pwrite
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE stats (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                    ino INTEGER NOT NULL, digest BLOB NOT NULL);
CREATE TABLE entries (digest BLOB NOT NULL, decoder TEXT NOT NULL, row INTEGER NOT NULL,
                      max_ok INTEGER NOT NULL, PRIMARY KEY (digest, decoder));
CREATE TABLE failures (digest BLOB NOT NULL, decoder TEXT NOT NULL, max_pixels INTEGER NOT NULL,
                       reason TEXT NOT NULL, named INTEGER NOT NULL, PRIMARY KEY (digest, decoder, max_pixels));
"""
# entries.max_ok: the smallest max_pixels the image is known to pass; a run with a lower limit
# decodes it again (the limit may refuse it), as it would without a cache.


class Rows(Protocol):
    """Where the rows of one size directory live and their shape (sizedir.SizeDir)."""

    dir: Path
    shape: tuple[int, int, int]
    row_bytes: int
    decoder: str  # the key every entry and failure is stored under (decoder versions and pixel spec)


class CorruptIndex(Exception):
    """The index (or its meta data) is not what this module writes."""


class Index:
    """An open, checked index with its lock held (shared for reading, exclusive for writing)."""

    def __init__(self, sd: Rows, conn: sqlite3.Connection, write: bool):
        self.sd, self.conn, self.write = sd, conn, write
        self.rows = int(conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()[0])
        self.file_rows = file_size(sd.dir / PIXELS) // sd.row_bytes
        self.valid_rows = min(self.rows, self.file_rows)
        self.truncated = self.file_rows < self.rows

    def _select(self, sql: str, keys: Sequence, *params) -> list[tuple]:
        got: list[tuple] = []
        for start in range(0, len(keys), _SQL_CHUNK):
            part = list(keys[start:start + _SQL_CHUNK])
            marks = ",".join("?" * len(part))
            got += self.conn.execute(sql.format(marks=marks), (*params, *part)).fetchall()
        return got

    def stat_digests(self, absolute: list[str], stats: list[StatKey | None]) -> dict[str, bytes]:
        """path -> digest, for the paths whose (size, mtime, inode) still match the stat table."""
        want = {a: s for a, s in zip(absolute, stats) if s is not None}
        rows = self._select("SELECT path, size, mtime_ns, ino, digest FROM stats WHERE path IN ({marks})",
                            list(want))
        return {p: bytes(d) for p, size, mtime, ino, d in rows if want.get(p) == (size, mtime, ino)}

    def entries(self, digests: list[bytes]) -> dict[bytes, tuple[int, int]]:
        rows = self._select("SELECT digest, row, max_ok FROM entries WHERE decoder = ? AND digest IN ({marks})",
                            digests, self.sd.decoder)
        return {bytes(d): (int(r), int(m)) for d, r, m in rows}

    def failures(self, digests: list[bytes], max_pixels: int) -> dict[bytes, tuple[str, int]]:
        rows = self._select("SELECT digest, reason, named FROM failures WHERE decoder = ? AND max_pixels = ? "
                            "AND digest IN ({marks})", digests, self.sd.decoder, int(max_pixels))
        return {bytes(d): (str(r), int(named)) for d, r, named in rows}

    def read(self, rows: np.ndarray, n: int) -> tuple[np.ndarray | None, bool]:
        """The pixels of the hit rows (rows[i] >= 0) in an (n, C, S, S) array; misses left zero.

        All hits, in order and contiguous: a read-only view of pixels.u8 (zero-copy).
        """
        hits = np.flatnonzero(rows >= 0)
        if len(hits) == 0:
            return None, False
        mm = np.memmap(self.sd.dir / PIXELS, dtype=np.uint8, mode="r", shape=(self.file_rows, *self.sd.shape))
        if len(hits) == n and n and np.array_equal(rows, np.arange(rows[0], rows[0] + n)):
            return np.asarray(mm[rows[0]:rows[0] + n]), True
        out = np.zeros((n, *self.sd.shape), dtype=np.uint8)
        order = hits[np.argsort(rows[hits], kind="stable")]  # read the file front to back
        step = max(1, (256 << 20) // self.sd.row_bytes)
        for start in range(0, len(order), step):
            part = order[start:start + step]
            out[part] = mm[rows[part]]
        del mm
        return out, False

    def store(self, pixels: np.ndarray, decoded: dict[bytes, int], failures: dict[bytes, tuple[str, int]],
              stats: dict[str, tuple[StatKey, bytes]], max_pixels: int) -> int:
        """Append rows for the decoded images (digest -> its row in ``pixels``) that the index lacks,
        fsync them, then commit the index in one transaction; return the number of rows added."""
        assert self.write
        conn, dec, sd = self.conn, self.sd.decoder, self.sd
        if self.truncated:  # forget the rows that are gone; they are appended again when decoded
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM entries WHERE row >= ?", (self.file_rows,))
            conn.execute("UPDATE meta SET value = ? WHERE key = 'rows'", (str(self.file_rows),))
            conn.execute("COMMIT")
            self.rows = self.valid_rows = self.file_rows
            self.truncated = False
        # Known digests were decoded under a lower max_pixels than they were checked with (or another
        # process stored them meanwhile): one row per digest, whose max_ok is lowered where it applies.
        have = {d: e for d, e in self.entries(list(decoded)).items() if e[0] < self.valid_rows}
        lowered = [d for d, (_, max_ok) in have.items() if max_ok > max_pixels]
        todo = [(d, k) for d, k in decoded.items() if d not in have]
        start = self.rows
        if todo:
            assert pixels is not None
            fd = os.open(sd.dir / PIXELS, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                offset = start * sd.row_bytes  # past the indexed rows: leftovers of a crash are overwritten
                step = max(1, _WRITE_CHUNK // sd.row_bytes)
                for at in range(0, len(todo), step):
                    idx = [k for _, k in todo[at:at + step]]
                    buf = memoryview(np.ascontiguousarray(pixels[idx])).cast("B")
                    while len(buf):
                        written = os.pwrite(fd, buf, offset)
                        offset += written
                        buf = buf[written:]
                os.fsync(fd)  # the bytes are on disk before the index points at them
            finally:
                os.close(fd)
            if start == 0:
                fsync_dir(sd.dir)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)",
                             [(d, dec, start + j, int(max_pixels)) for j, (d, _) in enumerate(todo)])
            conn.executemany("UPDATE entries SET max_ok = ? WHERE digest = ? AND decoder = ?",
                             [(int(max_pixels), d, dec) for d in lowered])
            conn.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
                             [(d, dec, int(max_pixels), t, named) for d, (t, named) in failures.items()])
            conn.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?, ?, ?, ?)",
                             [(p, *key, d) for p, (key, d) in stats.items()])
            conn.execute("UPDATE meta SET value = ? WHERE key = 'rows'", (str(start + len(todo)),))
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        self.rows = start + len(todo)
        return len(todo)


def open_db(path: Path, write: bool) -> sqlite3.Connection:
    """Readers open read-write too where they can: the journal of a writer that was killed mid-commit
    is rolled back by the next connection that may write (a read-only one fails on it instead)."""
    def connect(mode: str) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(os.fspath(path))}?mode={mode}"
        return sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)

    if write or os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        return connect("rwc" if write else "rw")
    return connect("ro")


def rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:  # no transaction open (BEGIN itself failed), or the connection is gone
        pass


def is_corrupt(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    text = str(e).lower()
    return "not a database" in text or "malformed" in text
