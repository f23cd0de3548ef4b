"""A persistent decode cache: every image is decoded once per (content, size, channels, decoder).

Layout, one directory per decoded size::

    <cache_dir>/decoded-v1/<S>x<S>x<C>/
        lock          flock(2): shared while reading, exclusive while appending or rebuilding
        index.sqlite  stat table (path, size, mtime, inode -> content digest), digest -> row,
                      digest -> why the image is unreadable (so it is not retried, and still reported)
        pixels.u8     append-only rows of C*S*S bytes, read back with np.memmap(mode="r")

The key of an image is the blake2b digest of its bytes (so a copy elsewhere is a hit and an edited
file a miss), the directory (size, channels) and the decoder: DECODER_VERSION in the path, plus the
versions of the libraries that produce the pixels (Pillow, libjpeg, libwebp, tifffile, imagecodecs)
in the index, so a cached row is always bit-identical to what decoding would give now. Only raw
bytes and SQL rows are stored: nothing is ever unpickled.

Crash and concurrency safety: rows are written under the exclusive lock at the row count the index
records (bytes beyond it are leftovers of a crashed writer and are overwritten), flushed to disk
with fsync, and only then does one sqlite transaction make them visible. Indexed rows are never
rewritten and pixels.u8 is never truncated in place (a rebuild unlinks it), so a memmap that a
reader holds stays valid. A cache that cannot be used (corrupt, truncated, read-only, disk full)
never fails a run: it logs a warning and the images are decoded in memory as without a cache.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import sqlite3
import stat as stat_module
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no flock, so no shared cache
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("labelwise")

DECODER_VERSION = 1  # bump when images.read_resized changes its output: every cached row is then stale
CACHE_TREE = f"decoded-v{DECODER_VERSION}"
OFF_SETTINGS = ("off", "none")
AUTO_SETTINGS = ("auto", "")
REMEDY = "run `labelwise cache clear` (or delete that folder), or train with --cache off"

_INDEX, _PIXELS, _LOCK = "index.sqlite", "pixels.u8", "lock"
_INDEX_FILES = (_INDEX, _INDEX + "-journal", _INDEX + "-wal", _INDEX + "-shm")
_TREE_RE = re.compile(r"decoded-v\d+")
_SIZE_RE = re.compile(r"(\d+)x(\d+)x(\d+)")
_SQL_CHUNK = 500  # parameters per IN (...) query (old sqlite builds allow 999)
_WRITE_CHUNK = 64 << 20  # bytes per pwrite
_SCHEMA = """
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

StatKey = tuple  # (st_size, st_mtime_ns, st_ino)
DecodeFn = Callable[[list, np.ndarray, np.ndarray], dict]  # (paths, out, rows) -> {bad path: reason}


# --------------------------------------------------------------------------- public API


def default_cache_dir() -> Path:
    """$LABELWISE_CACHE_DIR, else $XDG_CACHE_HOME/labelwise, else ~/.cache/labelwise."""
    if os.environ.get("LABELWISE_CACHE_DIR"):
        return Path(os.environ["LABELWISE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "labelwise"


def resolve_cache_dir(setting: str | os.PathLike | None) -> Path | None:
    """None/"auto" -> default_cache_dir(); "off"/"none" -> None (no cache); anything else is a path."""
    if setting is None:
        return default_cache_dir()
    text = os.fspath(setting)
    if text.strip().lower() in AUTO_SETTINGS:
        return default_cache_dir()
    if text.strip().lower() in OFF_SETTINGS:
        return None
    return Path(text).expanduser()


def cache_info(cache_dir: str | os.PathLike) -> dict:
    """What the decode cache under ``cache_dir`` holds::

        {"path": str, "bytes": int, "images": int,
         "sizes": {"224x224x3": {"path": str, "bytes": int, "images": int, "unreadable": int}, ...}}

    images/unreadable are None for a size directory whose index cannot be read.
    """
    root = Path(cache_dir)
    sizes: dict[str, dict] = {}
    for tree, size_dir in _size_dirs(root):
        name = size_dir.name if tree.name == CACHE_TREE else f"{tree.name}/{size_dir.name}"
        images = unreadable = None
        if (size_dir / _INDEX).is_file():
            try:
                with _connect(size_dir / _INDEX, write=False) as conn:
                    images = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
                    unreadable = conn.execute("SELECT COUNT(DISTINCT digest) FROM failures").fetchone()[0]
            except sqlite3.Error:
                pass
        else:
            images = unreadable = 0
        sizes[name] = {"path": str(size_dir), "bytes": sum(_file_size(size_dir / f) for f in _owned_files()),
                       "images": images, "unreadable": unreadable}
    return {"path": str(root), "bytes": sum(s["bytes"] for s in sizes.values()),
            "images": sum(s["images"] or 0 for s in sizes.values()), "sizes": sizes}


def clear_cache(cache_dir: str | os.PathLike) -> int:
    """Delete the decode cache under ``cache_dir`` (every decoded-v* tree); return the bytes freed.

    Only the files the cache creates are removed, each size directory under its exclusive lock
    (a run that is filling it finishes first); anything else in ``cache_dir`` is left alone.
    """
    root = Path(cache_dir)
    freed = 0
    trees: set[Path] = set()
    for tree, size_dir in _size_dirs(root):
        trees.add(tree)
        with _locked(size_dir, exclusive=True, create=False):
            for name in (*_INDEX_FILES, _PIXELS):
                freed += _unlink(size_dir / name)
            freed += _unlink(size_dir / _LOCK)  # last: waiting processes see a new lock file
        _rmdir(size_dir)
    for tree in trees | {t for t in _trees(root)}:
        _rmdir(tree)
    return freed


@dataclass
class CacheReport:
    """What one decode through the cache did."""

    path: Path | None = None  # the size directory
    images: int = 0
    reused: int = 0  # pixels read from the cache
    known_unreadable: int = 0  # failures reported from the cache without decoding
    decoded: int = 0  # images decoded this run
    stored: int = 0  # new rows appended
    zero_copy: bool = False  # the pixels are a read-only view of pixels.u8
    problem: str | None = None  # why the cache was not (fully) used, as warned

    def summary(self) -> str:
        known = f", {self.known_unreadable} known unreadable" if self.known_unreadable else ""
        return (f"decode cache: {self.reused} of {self.images} images reused from {self.path} "
                f"({self.decoded} decoded, {self.stored} added{known})")


def decode_through_cache(paths: Sequence, size: int, channels: int, cache_dir: str | os.PathLike, *,
                         max_pixels: int, decode: DecodeFn, workers: int | None = None,
                         progress: Callable | None = None) -> tuple[np.ndarray, dict, CacheReport]:
    """Like decoded.decode_all, through the cache: (pixels (N, C, S, S) uint8, {bad path: reason}, report).

    ``decode(paths, out, rows)`` decodes paths[j] into out[rows[j]] without a cache and returns
    {bad path: reason}. ``progress(total, description)``, if given, makes a rich bar for hashing.
    The pixels are a read-only view of pixels.u8 when every image is a hit, in order (zero-copy).
    """
    paths = list(paths)
    n = len(paths)
    sd = _SizeDir(Path(cache_dir), size, channels)
    report = CacheReport(path=sd.dir, images=n)
    if fcntl is None:
        return _without_cache(paths, sd, decode, report, "no file locking on this platform: decode cache off")
    names = [os.fspath(p) for p in paths]
    absolute = [os.path.abspath(p) for p in names]
    n_workers = workers or os.cpu_count() or 1
    corrupt = repair = False

    def unreadable(e: Exception) -> None:
        nonlocal corrupt
        corrupt = True
        _warn(report, f"decode cache index {sd.dir / _INDEX} is unreadable ({e}); it is ignored and rebuilt. "
                      f"If this repeats, {REMEDY}")

    def unusable(e: Exception):
        return _without_cache(paths, sd, decode, report, f"cannot read the decode cache in {sd.dir} ({_why(e)}); "
                                                         f"decoding in memory. {REMEDY}")

    # 1. the digests the stat table knows (shared lock)
    stats = _map(_stat_key, names, n_workers)
    known: dict[str, bytes] = {}
    try:
        with sd.session(write=False) as ix:
            if ix is not None:
                known = ix.stat_digests(absolute, stats)
    except _Corrupt as e:
        unreadable(e)
    except (OSError, sqlite3.Error, ValueError) as e:
        return unusable(e)

    # 2. hash the other files (no lock: reading them takes a while)
    digests: list[bytes | None] = [known.get(a) for a in absolute]
    keys: list[StatKey | None] = list(stats)  # the stat its digest belongs to; None: unstable, do not store
    hashed = [i for i in range(n) if stats[i] is not None and digests[i] is None]
    bar = progress(len(hashed), "hashing") if progress and hashed else nullcontext()
    with bar, ThreadPoolExecutor(n_workers) as pool:
        task = bar.add_task("hashing", total=len(hashed)) if progress and hashed else None
        parts = chunks(len(hashed), n_workers, most=16)
        for part, got in zip(parts, pool.map(lambda r: [_hash_file(names[hashed[j]]) for j in r], parts)):
            for j, one in zip(part, got):
                i = hashed[j]
                if one is None:  # unreadable now: the decoder says why
                    keys[i] = None
                else:
                    digests[i], keys[i] = one
            if task is not None:
                bar.advance(task, len(part))

    # 3. look the digests up and read the hits (shared lock)
    unique = list({d for d in digests if d is not None})
    hit_rows = np.full(n, -1, dtype=np.int64)
    failed: dict[bytes, tuple[str, int]] = {}
    entries: dict[bytes, tuple[int, int]] = {}
    out: np.ndarray | None = None
    if not corrupt:
        try:
            with sd.session(write=False) as ix:
                if ix is not None:
                    if ix.truncated:
                        repair = True
                        _warn(report, f"decode cache {sd.dir / _PIXELS} is shorter than its index says "
                                      f"(truncated?); the missing images are decoded again and the index "
                                      f"repaired. If this repeats, {REMEDY}")
                    entries = ix.entries(unique)
                    failed = ix.failures(unique, max_pixels)
                    for i, d in enumerate(digests):
                        got = entries.get(d) if d is not None and d not in failed else None
                        if got is not None and got[1] <= max_pixels and got[0] < ix.valid_rows:
                            hit_rows[i] = got[0]
                    out, report.zero_copy = ix.read(hit_rows, n)
        except _Corrupt as e:
            entries, failed, out = {}, {}, None
            hit_rows[:] = -1
            unreadable(e)
        except (OSError, sqlite3.Error, ValueError) as e:
            return unusable(e)
    if out is None:
        out = np.zeros((n, channels, size, size), dtype=np.uint8)
    bad: dict = {}
    for i, d in enumerate(digests):
        if d is not None and d in failed:
            template, named = failed[d]
            bad[paths[i]] = f"{template}: {names[i]}" if named else template
    report.reused = int((hit_rows >= 0).sum())
    report.known_unreadable = len(bad)

    # 4. decode the misses into their rows (no lock)
    miss = [i for i in range(n) if hit_rows[i] < 0 and paths[i] not in bad]
    report.decoded = len(miss)
    new_rows: dict[bytes, int] = {}  # digest -> its row in out, for every image decoded fine
    new_failures: dict[bytes, tuple[str, int]] = {}
    if miss:
        bad_m = decode([paths[i] for i in miss], out, np.asarray(miss, dtype=np.int64))
        bad.update(bad_m)
        # 5. store only what is stable: the file did not change while it was hashed and decoded
        after = _map(_stat_key, [names[i] for i in miss], n_workers)
        for k, i in enumerate(miss):
            d = digests[i]
            if d is None or keys[i] is None or after[k] != keys[i]:
                continue
            if paths[i] in bad_m:
                reason = _template(bad_m[paths[i]], names[i])
                if not reason[0].startswith("not enough memory"):  # transient: may work next time
                    new_failures.setdefault(d, reason)
            else:
                new_rows.setdefault(d, i)
    new_stats = {absolute[i]: (keys[i], digests[i]) for i in hashed if keys[i] is not None}
    if new_rows or new_failures or new_stats or repair or corrupt:
        try:
            with sd.session(write=True, suspect=corrupt) as ix:
                report.stored = ix.store(out, new_rows, new_failures, new_stats, max_pixels)
        except (OSError, sqlite3.Error, ValueError, _Corrupt) as e:
            if new_rows or new_failures:
                _warn(report, f"cannot write to the decode cache in {sd.dir} ({_why(e)}); this run is "
                              f"unaffected, but its images will be decoded again next time. {REMEDY}")
            else:
                log.debug("decode cache %s: index not updated (%s)", sd.dir, _why(e))
    bad = {p: bad[p] for p in paths if p in bad}  # path order, whatever order the threads finished in
    return out, bad, report


# --------------------------------------------------------------------------- one size directory


class _Corrupt(Exception):
    """The index (or its meta data) is not what this module writes."""


@functools.cache
def decoder_id() -> str:
    """DECODER_VERSION plus the library versions that decide the decoded pixels."""
    from importlib import metadata

    import tifffile
    from PIL import __version__ as pillow
    from PIL import features

    def lib(name: str) -> str:
        try:
            return str(features.version(name))
        except Exception:
            return "?"

    try:
        codecs = metadata.version("imagecodecs")
    except Exception:
        codecs = "none"
    return (f"v{DECODER_VERSION};pillow={pillow};jpeg={lib('jpg')};webp={lib('webp')};"
            f"tifffile={tifffile.__version__};imagecodecs={codecs}")


class _SizeDir:
    def __init__(self, root: Path, size: int, channels: int):
        self.dir = root / CACHE_TREE / f"{size}x{size}x{channels}"
        self.shape = (channels, size, size)
        self.row_bytes = channels * size * size
        self.meta = {"format": CACHE_TREE, "size": str(size), "channels": str(channels),
                     "row_bytes": str(self.row_bytes)}

    @contextmanager
    def session(self, write: bool, suspect: bool = False) -> Iterator[_Index | None]:
        """The index under the lock; None (reading) when there is no cache yet.

        Reading raises _Corrupt for a broken index; writing rebuilds it (fresh and empty) instead,
        after a full check of the database when ``suspect`` (a reader found it broken).
        """
        if write:
            self.dir.mkdir(parents=True, exist_ok=True)
        elif not (self.dir / _INDEX).is_file():
            yield None
            return
        with _locked(self.dir, exclusive=write, create=write):
            if not write and not (self.dir / _INDEX).is_file():  # cleared meanwhile
                yield None
                return
            conn = _connect(self.dir / _INDEX, write=write)
            try:
                try:
                    state = self._check(conn, full=write and suspect)
                except _Corrupt as e:
                    if not write:
                        raise
                    conn.close()
                    (log.info if suspect else log.warning)(
                        "decode cache index %s is unreadable (%s); rebuilding it", self.dir / _INDEX, e)
                    for name in (*_INDEX_FILES, _PIXELS):
                        _unlink(self.dir / name)
                    conn = _connect(self.dir / _INDEX, write=True)
                    state = self._check(conn)
                if state == "empty":
                    if not write:
                        yield None
                        return
                    self._create(conn)
                yield _Index(self, conn, write)
            except sqlite3.DatabaseError as e:
                if _is_corrupt(e):
                    raise _Corrupt(_why(e)) from e
                raise
            finally:
                conn.close()

    def _check(self, conn: sqlite3.Connection, full: bool = False) -> str:
        """'ok', 'empty' (a new file, or a creator that crashed before its first commit), or _Corrupt."""
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return "empty"
            if not {"meta", "stats", "entries", "failures"} <= tables:
                raise _Corrupt(f"tables missing: has {sorted(tables)}")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if full:
                verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    raise _Corrupt(f"quick_check: {verdict}")
        except sqlite3.DatabaseError as e:
            if _is_corrupt(e):
                raise _Corrupt(_why(e)) from e
            raise
        for key, want in self.meta.items():
            if meta.get(key) != want:
                raise _Corrupt(f"meta {key} is {meta.get(key)!r}, expected {want!r}")
        if not str(meta.get("rows", "")).isdigit():
            raise _Corrupt(f"meta rows is {meta.get('rows')!r}")
        return "ok"

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [*self.meta.items(), ("rows", "0")])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        _fsync_dir(self.dir)


class _Index:
    """An open, checked index with its lock held (shared for reading, exclusive for writing)."""

    def __init__(self, sd: _SizeDir, conn: sqlite3.Connection, write: bool):
        self.sd, self.conn, self.write = sd, conn, write
        self.rows = int(conn.execute("SELECT value FROM meta WHERE key = 'rows'").fetchone()[0])
        self.file_rows = _file_size(sd.dir / _PIXELS) // sd.row_bytes
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
                            digests, decoder_id())
        return {bytes(d): (int(r), int(m)) for d, r, m in rows}

    def failures(self, digests: list[bytes], max_pixels: int) -> dict[bytes, tuple[str, int]]:
        rows = self._select("SELECT digest, reason, named FROM failures WHERE decoder = ? AND max_pixels = ? "
                            "AND digest IN ({marks})", digests, decoder_id(), int(max_pixels))
        return {bytes(d): (str(r), int(named)) for d, r, named in rows}

    def read(self, rows: np.ndarray, n: int) -> tuple[np.ndarray | None, bool]:
        """The pixels of the hit rows (rows[i] >= 0) in an (n, C, S, S) array; misses left zero.

        All hits, in order and contiguous: a read-only view of pixels.u8 (zero-copy).
        """
        hits = np.flatnonzero(rows >= 0)
        if len(hits) == 0:
            return None, False
        mm = np.memmap(self.sd.dir / _PIXELS, dtype=np.uint8, mode="r", shape=(self.file_rows, *self.sd.shape))
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
        conn, dec, sd = self.conn, decoder_id(), self.sd
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
            fd = os.open(sd.dir / _PIXELS, os.O_RDWR | os.O_CREAT, 0o644)
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
                _fsync_dir(sd.dir)
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
            _rollback(conn)
            raise
        self.rows = start + len(todo)
        return len(todo)


# --------------------------------------------------------------------------- helpers


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:  # no transaction open (BEGIN itself failed), or the connection is gone
        pass


def _without_cache(paths: list, sd: _SizeDir, decode: DecodeFn, report: CacheReport, message: str):
    _warn(report, message)
    out = np.zeros((len(paths), *sd.shape), dtype=np.uint8)
    bad = decode(paths, out, np.arange(len(paths), dtype=np.int64))
    report.decoded, report.reused, report.known_unreadable = len(paths), 0, 0
    return out, {p: bad[p] for p in paths if p in bad}, report


def _warn(report: CacheReport, message: str) -> None:
    log.warning(message)
    report.problem = report.problem or message


def _why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__


def _is_corrupt(e: sqlite3.DatabaseError) -> bool:
    code = getattr(e, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    text = str(e).lower()
    return "not a database" in text or "malformed" in text


def _template(reason: str, name: str) -> tuple[str, int]:
    """A failure reason without the path it names (the same content elsewhere names its own path)."""
    suffix = f": {name}"
    return (reason[:-len(suffix)], 1) if reason.endswith(suffix) else (reason, 0)


def _stat_key(name: str) -> StatKey | None:
    try:
        st = os.stat(name)
    except (OSError, ValueError):
        return None
    if not stat_module.S_ISREG(st.st_mode):
        return None
    ino = st.st_ino if st.st_ino < 2**63 else st.st_ino - 2**64  # sqlite integers are signed 64-bit
    return (st.st_size, st.st_mtime_ns, ino)


def _hash_file(name: str) -> tuple[bytes, StatKey | None] | None:
    """(blake2b-128 of the bytes, the stat key if the file did not change while read), None if unreadable."""
    before = _stat_key(name)
    if before is None:
        return None
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(name, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.digest(), (before if _stat_key(name) == before else None)


def chunks(n: int, workers: int, most: int = 64) -> list[range]:
    """Split range(n) into runs for a thread pool: one future per item costs ~40 us, one per
    run of items nothing, while enough runs (8 per worker) keep every worker busy."""
    step = max(1, min(most, n // (8 * max(1, workers))))
    return [range(start, min(n, start + step)) for start in range(0, n, step)]


def _map(fn, items: list, workers: int) -> list:
    """[fn(x) for x in items] on a thread pool (fn releases the GIL: file system calls)."""
    if len(items) < 64 or workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(lambda r: [fn(items[i]) for i in r], chunks(len(items), workers))
        return [y for part in parts for y in part]


def _connect(path: Path, write: bool) -> sqlite3.Connection:
    """Readers open read-write too where they can: the journal of a writer that was killed mid-commit
    is rolled back by the next connection that may write (a read-only one fails on it instead)."""
    def connect(mode: str) -> sqlite3.Connection:
        uri = f"file:{urllib.parse.quote(os.fspath(path))}?mode={mode}"
        return sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None, check_same_thread=False)

    if write or os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        return connect("rwc" if write else "rw")
    return connect("ro")


@contextmanager
def _locked(directory: Path, exclusive: bool, create: bool) -> Iterator[None]:
    """flock <directory>/lock; re-opened if it was replaced meanwhile (clear_cache deletes it last).

    Without a lock file that can be opened (a read-only directory that never had one), unlocked:
    nobody can write there either.
    """
    path = directory / _LOCK
    attempts = 0
    while True:
        try:
            fd = os.open(path, (os.O_RDWR | os.O_CREAT) if create else os.O_RDWR, 0o644)
        except FileNotFoundError:
            if create and attempts < 10:  # clear_cache removed the directory meanwhile
                attempts += 1
                directory.mkdir(parents=True, exist_ok=True)
                continue
            fd = -1
        except PermissionError:
            try:
                fd = os.open(path, os.O_RDONLY)  # flock works on a read-only descriptor too
            except OSError:
                fd = -1
        if fd < 0:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield
                return
        finally:
            os.close(fd)  # closing releases the lock


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _unlink(path: Path) -> int:
    size = _file_size(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:  # not empty: someone else's files, or a run that just recreated it
        pass


def _owned_files() -> tuple[str, ...]:
    return (*_INDEX_FILES, _PIXELS, _LOCK)


def _trees(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and _TREE_RE.fullmatch(p.name))
    except OSError:
        return []


def _size_dirs(root: Path) -> list[tuple[Path, Path]]:
    found = []
    for tree in _trees(root):
        try:
            found += [(tree, d) for d in sorted(tree.iterdir()) if d.is_dir() and _SIZE_RE.fullmatch(d.name)]
        except OSError:
            pass
    return found
