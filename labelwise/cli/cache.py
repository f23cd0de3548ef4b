"""labelwise cache"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from labelwise.cli.console import (
    out,
)


def cache(
    action: str = typer.Argument("info", help="info (where the decoded-image cache is, how big) or clear."),
    directory: Optional[Path] = typer.Option(None, "--dir", help="Cache folder (default: $LABELWISE_CACHE_DIR "
                                             "or ~/.cache/labelwise, as train uses)."),
) -> None:
    """Show or clear the decoded-image cache that train, evaluate and predict reuse across runs."""
    from labelwise.data.cache import cache_info, clear_cache, default_cache_dir
    from labelwise.errors import check_choice

    check_choice("cache action", action, ("info", "clear"))
    root = directory or default_cache_dir()
    if action == "clear":
        freed = clear_cache(root)
        out.print(f"cleared {root}: {freed / 2**20:.1f} MiB freed")
        return
    info = cache_info(root)
    out.print(f"decoded-image cache at [bold]{root}[/]: {info['bytes'] / 2**20:.1f} MiB, {info['images']} images")
    for name, size in info["sizes"].items():
        count = "unreadable index" if size["images"] is None else f"{size['images']} images"
        out.print(f"  {name}: {count}, {size['bytes'] / 2**20:.1f} MiB")


