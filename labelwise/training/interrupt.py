"""Ctrl-C / SIGTERM during training: stop at the next batch and still write the bundle; a second one stops at once.

``train()`` runs inside ``stop_on_signal()``. The first SIGINT or SIGTERM only records the request;
the ``StopOnSignal`` callback raises ``StopRequested`` at the next training or validation batch (a
batch takes well under a second on a CPU), Lightning tears down, and ``fit`` loads the best
checkpoint so far and returns it marked interrupted; the bundle is written as usual, with
``"interrupted": true`` in metrics.json's run section. checkpoints/last.ckpt still holds the last
completed epoch, so ``train --resume`` continues the same run. A second signal raises
KeyboardInterrupt at once (the CLI prints one line and exits 130).

The handlers are process-wide (signals are), installed only in the main thread and restored on exit.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

from lightning.pytorch.callbacks import Callback


class StopRequested(Exception):
    """Raised inside Lightning at a batch boundary after the first Ctrl-C / SIGTERM."""


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal with nothing to save (e.g. before the first epoch finished)."""


class _Guard:
    def __init__(self) -> None:
        self.signal: str | None = None  # name of the first signal received
        self.count = 0


_ACTIVE: _Guard | None = None
_MESSAGE = ("\n{name}: stopping after this batch and writing the bundle from the best checkpoint so far "
            "(press Ctrl-C again to stop at once)")


def requested() -> str | None:
    """The signal that asked training to stop ("SIGINT", "SIGTERM"), or None."""
    return _ACTIVE.signal if _ACTIVE is not None else None


@contextlib.contextmanager
def stop_on_signal() -> Iterator[_Guard]:
    """Within: the first SIGINT/SIGTERM asks training to stop gracefully; the second raises KeyboardInterrupt."""
    global _ACTIVE
    guard = _Guard()
    if threading.current_thread() is not threading.main_thread() or _ACTIVE is not None:
        yield _ACTIVE or guard  # signals can only be handled in the main thread; nested: the outer guard rules
        return

    def handle(signum, frame) -> None:
        guard.count += 1
        if guard.count == 1:
            guard.signal = signal.Signals(signum).name
            print(_MESSAGE.format(name=guard.signal), file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    _ACTIVE = guard
    try:
        yield guard
    except SystemExit:
        # Lightning turns a KeyboardInterrupt inside fit into sys.exit(1): it was our second signal
        if guard.count >= 2:
            raise KeyboardInterrupt from None
        raise
    finally:
        _ACTIVE = None
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def stopped_by_signal(error: BaseException) -> bool:
    """Whether an exception out of ``trainer.fit`` is the graceful stop (ours, or Lightning's SIGTERM exit)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    return requested() is not None and isinstance(error, (StopRequested, SIGTERMException))


class StopOnSignal(Callback):
    """Raises StopRequested at the next batch once a stop was requested (see ``stop_on_signal``)."""

    def _check(self) -> None:
        if requested():
            raise StopRequested(requested())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._check()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._check()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._check()
