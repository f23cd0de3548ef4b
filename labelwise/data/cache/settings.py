"""Where the decode cache lives and what decoder version its rows belong to."""
from __future__ import annotations

import functools
import os
from pathlib import Path

DECODER_VERSION = 1  # bump when images.read_resized changes its output: every cached row is then stale
CACHE_TREE = f"decoded-v{DECODER_VERSION}"
OFF_SETTINGS = ("off", "none")
AUTO_SETTINGS = ("auto", "")
REMEDY = "run `labelwise cache clear` (or delete that folder), or train with --cache off"


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
