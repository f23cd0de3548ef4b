"""What a decode cache holds (``labelwise cache info``) and deleting it (``labelwise cache clear``)."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from labelwise.data.cache.files import (INDEX, INDEX_FILES, LOCK, PIXELS, cache_trees, file_size, locked,
                                        owned_files, rmdir, size_dirs, unlink)
from labelwise.data.cache.index import open_db
from labelwise.data.cache.settings import CACHE_TREE


def cache_info(cache_dir: str | os.PathLike) -> dict:
    """What the decode cache under ``cache_dir`` holds::

        {"path": str, "bytes": int, "images": int,
         "sizes": {"224x224x3": {"path": str, "bytes": int, "images": int, "unreadable": int}, ...}}

    images/unreadable are None for a size directory whose index cannot be read.
    """
    root = Path(cache_dir)
    sizes: dict[str, dict] = {}
    for tree, size_dir in size_dirs(root):
        name = size_dir.name if tree.name == CACHE_TREE else f"{tree.name}/{size_dir.name}"
        images = unreadable = None
        if (size_dir / INDEX).is_file():
            try:
                with open_db(size_dir / INDEX, write=False) as conn:
                    images = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
                    unreadable = conn.execute("SELECT COUNT(DISTINCT digest) FROM failures").fetchone()[0]
            except sqlite3.Error:
                pass
        else:
            images = unreadable = 0
        sizes[name] = {"path": str(size_dir), "bytes": sum(file_size(size_dir / f) for f in owned_files()),
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
    for tree, size_dir in size_dirs(root):
        trees.add(tree)
        with locked(size_dir, exclusive=True, create=False):
            for name in (*INDEX_FILES, PIXELS):
                freed += unlink(size_dir / name)
            freed += unlink(size_dir / LOCK)  # last: waiting processes see a new lock file
        rmdir(size_dir)
    for tree in trees | {t for t in cache_trees(root)}:
        rmdir(tree)
    return freed
