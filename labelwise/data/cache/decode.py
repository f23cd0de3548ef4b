"""decode_through_cache: stat, hash, look up, read the hits, decode the misses, store what is stable."""
from __future__ import annotations

import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from labelwise.data.cache.files import INDEX, PIXELS, StatKey, chunks, fcntl, hash_file, stat_key, thread_map, why
from labelwise.data.cache.index import CorruptIndex
from labelwise.data.cache.settings import REMEDY
from labelwise.data.cache.sizedir import SizeDir

log = logging.getLogger("labelwise")

DecodeFn = Callable[[list, np.ndarray, np.ndarray], dict]  # (paths, out, rows) -> {bad path: reason}


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
                         progress: Callable | None = None, variant: str = "") -> tuple[np.ndarray, dict, CacheReport]:
    """Like decoded.decode_all, through the cache: (pixels (N, C, S, S) uint8, {bad path: reason}, report).

    ``decode(paths, out, rows)`` decodes paths[j] into out[rows[j]] without a cache and returns
    {bad path: reason}. ``progress(total, description)``, if given, makes a rich bar for hashing.
    The pixels are a read-only view of pixels.u8 when every image is a hit, in order (zero-copy).
    ``variant``: what else the pixels depend on (band_scaling.PixelSpec.key(): bands, scaling); part of the key.
    """
    paths = list(paths)
    n = len(paths)
    sd = SizeDir(Path(cache_dir), size, channels, variant)
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
        _warn(report, f"decode cache index {sd.dir / INDEX} is unreadable ({e}); it is ignored and rebuilt. "
                      f"If this repeats, {REMEDY}")

    def unusable(e: Exception):
        return _without_cache(paths, sd, decode, report, f"cannot read the decode cache in {sd.dir} ({why(e)}); "
                                                         f"decoding in memory. {REMEDY}")

    # 1. the digests the stat table knows (shared lock)
    stats = thread_map(stat_key, names, n_workers)
    known: dict[str, bytes] = {}
    try:
        with sd.session(write=False) as ix:
            if ix is not None:
                known = ix.stat_digests(absolute, stats)
    except CorruptIndex as e:
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
        for part, got in zip(parts, pool.map(lambda r: [hash_file(names[hashed[j]]) for j in r], parts)):
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
                        _warn(report, f"decode cache {sd.dir / PIXELS} is shorter than its index says "
                                      f"(truncated?); the missing images are decoded again and the index "
                                      f"repaired. If this repeats, {REMEDY}")
                    entries = ix.entries(unique)
                    failed = ix.failures(unique, max_pixels)
                    for i, d in enumerate(digests):
                        got = entries.get(d) if d is not None and d not in failed else None
                        if got is not None and got[1] <= max_pixels and got[0] < ix.valid_rows:
                            hit_rows[i] = got[0]
                    out, report.zero_copy = ix.read(hit_rows, n)
        except CorruptIndex as e:
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
        after = thread_map(stat_key, [names[i] for i in miss], n_workers)
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
        except (OSError, sqlite3.Error, ValueError, CorruptIndex) as e:
            if new_rows or new_failures:
                _warn(report, f"cannot write to the decode cache in {sd.dir} ({why(e)}); this run is "
                              f"unaffected, but its images will be decoded again next time. {REMEDY}")
            else:
                log.debug("decode cache %s: index not updated (%s)", sd.dir, why(e))
    bad = {p: bad[p] for p in paths if p in bad}  # path order, whatever order the threads finished in
    return out, bad, report


def _without_cache(paths: list, sd: SizeDir, decode: DecodeFn, report: CacheReport, message: str):
    _warn(report, message)
    out = np.zeros((len(paths), *sd.shape), dtype=np.uint8)
    bad = decode(paths, out, np.arange(len(paths), dtype=np.int64))
    report.decoded, report.reused, report.known_unreadable = len(paths), 0, 0
    return out, {p: bad[p] for p in paths if p in bad}, report


def _warn(report: CacheReport, message: str) -> None:
    log.warning(message)
    report.problem = report.problem or message


def _template(reason: str, name: str) -> tuple[str, int]:
    """A failure reason without the path it names (the same content elsewhere names its own path)."""
    suffix = f": {name}"
    return (reason[:-len(suffix)], 1) if reason.endswith(suffix) else (reason, 0)
