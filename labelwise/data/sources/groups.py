"""--group-by as a regular expression: each image's group key found in its path."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from labelwise.data.samples import Samples
from labelwise.data.sources.csv_read import csv_files, pick_csv, read_csv
from labelwise.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np


def regex_groups(samples: Samples, folders: list[Path], group_by: str) -> np.ndarray:
    """Each image's group key: the first capture group (or the whole match) of ``group_by``
    searched in its path relative to ``folders`` (the deepest folder holding it)."""
    import numpy as np

    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        raise ConfigError(f"--group-by {group_by!r} is not {_not_column(samples)} and not a valid regular "
                          f"expression ({exc}); name a column or fix the expression") from None
    names = [_relative(p, folders) for p in samples.paths]
    keys: list[str] = []
    missed: list[str] = []
    for name in names:
        m = pattern.search(name)
        if m is None:
            missed.append(name)
            continue
        key = next((g for g in m.groups() if g), None) or m.group(0)
        keys.append(key)
    if len(missed) == len(names):
        raise DataError(f"--group-by {group_by!r} is not {_not_column(samples)}, so it was used as a regular "
                        f"expression, and it matches none of the {len(names)} image paths (e.g. {names[0]!r}); "
                        f"name a column or write an expression that finds the group in the path")
    if missed:
        raise DataError(f"--group-by {group_by!r}: the regular expression does not match image {missed[0]!r} "
                        f"({len(missed)} of {len(names)} images unmatched); every image needs a group: "
                        f"make the expression match them too (e.g. with an optional part, '(_aug\\d+)?')")
    if any(not k for k in keys):
        empty = names[keys.index("")]
        raise DataError(f"--group-by {group_by!r} matches an empty string in image {empty!r}; the group key "
                        f"must not be empty: use a capture group that takes at least one character")
    return np.array(keys)


def _not_column(samples: Samples) -> str:
    """What --group-by failed to be as a column, for error messages: 'a column of X (columns: ...)'."""
    if not samples.source.startswith("csv") or samples.origin is None:
        return f"a CSV column ({samples.source or 'this'} data has no CSV)"
    origin = samples.origin
    csv_path = origin if origin.is_file() else pick_csv(origin, csv_files(origin))
    return f"a column of {csv_path} (columns: {', '.join(read_csv(csv_path)[0][1])})"


def _relative(path: Path, folders: list[Path]) -> str:
    for d in folders:
        try:
            return path.relative_to(d).as_posix()
        except ValueError:
            continue
    return path.name
