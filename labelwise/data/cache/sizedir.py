"""One size directory (<cache_dir>/decoded-v1/<S>x<S>x<C>/): its lock, and its index checked, created or rebuilt."""
from __future__ import annotations

import logging
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from labelwise.data.cache.files import INDEX, INDEX_FILES, PIXELS, fsync_dir, locked, unlink, why
from labelwise.data.cache.index import SCHEMA, CorruptIndex, Index, is_corrupt, open_db, rollback
from labelwise.data.cache.settings import CACHE_TREE, decoder_id

log = logging.getLogger("labelwise")


class SizeDir:
    """The decoded images of one (size, channels): where they live, their row shape and the meta its index must hold."""

    def __init__(self, root: Path, size: int, channels: int, variant: str = ""):
        self.dir = root / CACHE_TREE / f"{size}x{size}x{channels}"
        # the decoder key of the rows: library versions, plus the bands and scaling of a PixelSpec
        self.decoder = decoder_id() + (f";{variant}" if variant else "")
        self.shape = (channels, size, size)
        self.row_bytes = channels * size * size
        self.meta = {"format": CACHE_TREE, "size": str(size), "channels": str(channels),
                     "row_bytes": str(self.row_bytes)}

    @contextmanager
    def session(self, write: bool, suspect: bool = False) -> Iterator[Index | None]:
        """The index under the lock; None (reading) when there is no cache yet.

        Reading raises CorruptIndex for a broken index; writing rebuilds it (fresh and empty) instead,
        after a full check of the database when ``suspect`` (a reader found it broken).
        """
        if write:
            self.dir.mkdir(parents=True, exist_ok=True)
        elif not (self.dir / INDEX).is_file():
            yield None
            return
        with locked(self.dir, exclusive=write, create=write):
            if not write and not (self.dir / INDEX).is_file():  # cleared meanwhile
                yield None
                return
            conn = open_db(self.dir / INDEX, write=write)
            try:
                try:
                    state = self._check(conn, full=write and suspect)
                except CorruptIndex as e:
                    if not write:
                        raise
                    conn.close()
                    (log.info if suspect else log.warning)(
                        "decode cache index %s is unreadable (%s); rebuilding it", self.dir / INDEX, e)
                    for name in (*INDEX_FILES, PIXELS):
                        unlink(self.dir / name)
                    conn = open_db(self.dir / INDEX, write=True)
                    state = self._check(conn)
                if state == "empty":
                    if not write:
                        yield None
                        return
                    self._create(conn)
                yield Index(self, conn, write)
            except sqlite3.DatabaseError as e:
                if is_corrupt(e):
                    raise CorruptIndex(why(e)) from e
                raise
            finally:
                conn.close()

    def _check(self, conn: sqlite3.Connection, full: bool = False) -> str:
        """'ok', 'empty' (a new file, or a creator that crashed before its first commit), or CorruptIndex."""
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return "empty"
            if not {"meta", "stats", "entries", "failures"} <= tables:
                raise CorruptIndex(f"tables missing: has {sorted(tables)}")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if full:
                verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    raise CorruptIndex(f"quick_check: {verdict}")
        except sqlite3.DatabaseError as e:
            if is_corrupt(e):
                raise CorruptIndex(why(e)) from e
            raise
        for key, want in self.meta.items():
            if meta.get(key) != want:
                raise CorruptIndex(f"meta {key} is {meta.get(key)!r}, expected {want!r}")
        if not str(meta.get("rows", "")).isdigit():
            raise CorruptIndex(f"meta rows is {meta.get('rows')!r}")
        return "ok"

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [*self.meta.items(), ("rows", "0")])
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        fsync_dir(self.dir)
