"""The files of a decode cache: names, locking, stat keys and content digests, small file helpers."""
from __future__ import annotations

import hashlib
import os
import re
import stat as stat_module
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock, so no shared cache
    fcntl = None  # type: ignore[assignment]

INDEX, PIXELS, LOCK = "index.sqlite", "pixels.u8", "lock"
INDEX_FILES = (INDEX, INDEX + "-journal", INDEX + "-wal", INDEX + "-shm")
_TREE_RE = re.compile(r"decoded-v\d+")
_SIZE_RE = re.compile(r"(\d+)x(\d+)x(\d+)")

StatKey = tuple  # (st_size, st_mtime_ns, st_ino)


@contextmanager
def locked(directory: Path, exclusive: bool, create: bool) -> Iterator[None]:
    """flock <directory>/lock; re-opened if it was replaced meanwhile (clear_cache deletes it last).

    Without a lock file that can be opened (a read-only directory that never had one), unlocked:
    nobody can write there either.
    """
    path = directory / LOCK
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


def fsync_dir(directory: Path) -> None:
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


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def unlink(path: Path) -> int:
    size = file_size(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:  # not empty: someone else's files, or a run that just recreated it
        pass


def owned_files() -> tuple[str, ...]:
    return (*INDEX_FILES, PIXELS, LOCK)


def cache_trees(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and _TREE_RE.fullmatch(p.name))
    except OSError:
        return []


def size_dirs(root: Path) -> list[tuple[Path, Path]]:
    found = []
    for tree in cache_trees(root):
        try:
            found += [(tree, d) for d in sorted(tree.iterdir()) if d.is_dir() and _SIZE_RE.fullmatch(d.name)]
        except OSError:
            pass
    return found


def stat_key(name: str) -> StatKey | None:
    try:
        st = os.stat(name)
    except (OSError, ValueError):
        return None
    if not stat_module.S_ISREG(st.st_mode):
        return None
    ino = st.st_ino if st.st_ino < 2**63 else st.st_ino - 2**64  # sqlite integers are signed 64-bit
    return (st.st_size, st.st_mtime_ns, ino)


def hash_file(name: str) -> tuple[bytes, StatKey | None] | None:
    """(blake2b-128 of the bytes, the stat key if the file did not change while read), None if unreadable."""
    before = stat_key(name)
    if before is None:
        return None
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(name, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.digest(), (before if stat_key(name) == before else None)


def chunks(n: int, workers: int, most: int = 64) -> list[range]:
    """Split range(n) into runs for a thread pool: one future per item costs ~40 us, one per
    run of items nothing, while enough runs (8 per worker) keep every worker busy."""
    step = max(1, min(most, n // (8 * max(1, workers))))
    return [range(start, min(n, start + step)) for start in range(0, n, step)]


def thread_map(fn, items: list, workers: int) -> list:
    """[fn(x) for x in items] on a thread pool (fn releases the GIL: file system calls)."""
    if len(items) < 64 or workers <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(workers) as pool:
        parts = pool.map(lambda r: [fn(items[i]) for i in r], chunks(len(items), workers))
        return [y for part in parts for y in part]


def why(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e) or type(e).__name__
