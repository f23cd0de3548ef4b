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
and the model's band choice and scaling (band_scaling.PixelSpec.key()) in the index, so a cached row
is always bit-identical to what decoding would give now. Only raw
bytes and SQL rows are stored: nothing is ever unpickled.

Crash and concurrency safety: rows are written under the exclusive lock at the row count the index
records (bytes beyond it are leftovers of a crashed writer and are overwritten), flushed to disk
with fsync, and only then does one sqlite transaction make them visible. Indexed rows are never
rewritten and pixels.u8 is never truncated in place (a rebuild unlinks it), so a memmap that a
reader holds stays valid. A cache that cannot be used (corrupt, truncated, read-only, disk full)
never fails a run: it logs a warning and the images are decoded in memory as without a cache.
"""
from __future__ import annotations

import os  # noqa: F401  (tests patch cache.os.pwrite to simulate a full disk)

from labelwise.data.cache.decode import CacheReport, DecodeFn, decode_through_cache
from labelwise.data.cache.files import StatKey, chunks
from labelwise.data.cache.manage import cache_info, clear_cache
from labelwise.data.cache.settings import (AUTO_SETTINGS, CACHE_TREE, DECODER_VERSION, OFF_SETTINGS, REMEDY,
                                           decoder_id, default_cache_dir, resolve_cache_dir)

__all__ = ["AUTO_SETTINGS", "CACHE_TREE", "DECODER_VERSION", "OFF_SETTINGS", "REMEDY", "CacheReport", "DecodeFn",
           "StatKey", "cache_info", "chunks", "clear_cache", "decode_through_cache", "decoder_id",
           "default_cache_dir", "resolve_cache_dir"]
