"""The one progress bar of labelwise (decoding, embedding, predicting): on stderr, gone when done."""
from __future__ import annotations

MIN_ITEMS = 500  # fewer items finish before a bar is worth drawing


def progress_bar(total: int, description: str, enabled: bool = True):
    """A rich Progress with one column layout; disabled when not wanted or for fewer than MIN_ITEMS items."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True, disable=not enabled or total < MIN_ITEMS)
