"""Every output path is a checked decision, made before any work starts.

A run directory is written only when it is new, empty, a run of the same data, or the user said
``--overwrite`` (replace) or ``--resume`` (continue, after the data and the options that shape the
model were checked against the run's config.yaml). A run directory is locked while a process writes
it. Single output files (evaluation JSON, report HTML, predictions CSV, exports) never replace a
bundle file, and replace an existing file only when labelwise wrote it or ``--overwrite`` is given.

>>> plan = check_run_dir("runs/a", "data/", resume=False, overwrite=False)   # doctest: +SKIP
>>> with RunLock(plan.out):                                                # doctest: +SKIP
...     plan.clear_stale(); train(...)
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from labelwise.config import RunConfig
from labelwise.errors import LabelwiseError


class OutputError(LabelwiseError):
    """An output path cannot or must not be written (exists, not ours, read-only, full, locked)."""


CONFIG_FILE, META_FILE, WEIGHTS_FILE, LOCK_FILE = "config.yaml", "model.json", "model.safetensors", ".labelwise.lock"
# What a run directory holds (see DESIGN.md, "The model bundle"): never the target of a single-file --out.
BUNDLE_FILES = frozenset({CONFIG_FILE, META_FILE, WEIGHTS_FILE, "metrics.json", "history.csv",
                          "val_predictions.csv", "oof_predictions.csv", "skipped_images.csv"})
# Left from an earlier training: removed when a run directory is trained afresh, so a later
# --resume or the report never mixes two runs.
STALE_TRAINING = ("checkpoints", "fold_*")
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG}
# Options that fix the split or the network: --resume with another value would continue a different run.
RESUME_MUST_MATCH = (("data", "format"), ("data", "images"), ("data", "val_split"), ("data", "image_size"),
                     ("data", "channels"), ("data", "group_by"), ("model", "backbone"), ("model", "pretrained"),
                     ("model", "fusion"), ("train", "folds"), ("train", "seed"), ("train", "strategy"))


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / n).exists() for n in (CONFIG_FILE, META_FILE, "checkpoints"))


def _saved_config(run: Path) -> RunConfig | None:
    try:
        return RunConfig.load(run / CONFIG_FILE) if (run / CONFIG_FILE).is_file() else None
    except LabelwiseError:
        return None


def _same_path(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


@dataclass
class RunPlan:
    """What check_run_dir decided: 'new', 'replace' (same data, or --overwrite) or 'resume'."""

    out: Path
    action: str
    saved: RunConfig | None = None  # the run's config.yaml, when there is one
    notes: list[str] = field(default_factory=list)

    def clear_stale(self) -> None:
        """A fresh training in an existing run directory: drop the old checkpoints and fold folders (with the run
        locked, after every check passed), so nothing of the old run can be resumed or reported as this one."""
        if self.action != "replace" or _child_rank():
            return
        for pattern in STALE_TRAINING:
            for p in self.out.glob(pattern):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)


def check_run_dir(out: str | Path, data: str | Path, *, resume: bool, overwrite: bool,
                  config: RunConfig | None = None) -> RunPlan:
    """Decide whether ``train DATA --out OUT`` may write OUT; OutputError (saying what to do) when not.

    Reads only: nothing is created or changed here."""
    out, data_path = Path(out), Path(data)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; a run is a folder: give a new folder name")
    if data_path.is_dir() and out.resolve().is_relative_to(data_path.resolve()):
        raise OutputError(f"--out {out} is inside the data folder {data}: the run's files would be read as data "
                          "next time; write the run elsewhere, e.g. --out runs/NAME")
    _check_writable(out, "--out")
    if not out.exists() or not any(p.name != LOCK_FILE for p in out.iterdir()):
        if resume:
            return RunPlan(out, "new", notes=[f"--resume: {out} holds no run yet; training from scratch"])
        return RunPlan(out, "new")
    if not is_run_dir(out):
        if resume:
            raise OutputError(f"--resume: {out} is not a labelwise run (no config.yaml, model.json or checkpoints/)")
        if overwrite:
            return RunPlan(out, "replace", notes=[f"--overwrite: writing the run into {out} (its files stay)"])
        raise OutputError(f"--out {out} is a folder that labelwise did not write and it is not empty; choose a new "
                          "folder, or pass --overwrite to write the run into it")
    saved = _saved_config(out)
    old_data = saved.data.data if saved else None
    same_data = bool(old_data) and _same_path(old_data, data_path)
    if resume:
        if saved is None:
            raise OutputError(f"--resume: {out}/{CONFIG_FILE} is missing or unreadable, so it cannot be checked "
                              "against this run; train into a new --out")
        plan = RunPlan(out, "resume", saved)
        if not same_data:
            if Path(old_data).exists():
                raise OutputError(f"--resume: {out} was trained on {old_data}, not {data_path.resolve()}; resume "
                                  "with the same data, or train into a new --out")
            plan.notes.append(f"--resume: the run's data {old_data} is gone; continuing with {data_path.resolve()} "
                              "(its labels are checked against the run's)")
        if config is not None:
            check_resume_options(saved, config, out, given_only=True)
        return plan
    if same_data:
        return RunPlan(out, "replace", saved, [f"replacing the earlier run in {out} (same data)"])
    if overwrite:
        return RunPlan(out, "replace", saved, [f"--overwrite: replacing the run in {out} (trained on {old_data})"])
    trained_on = f"trained on {old_data}" if old_data else "of unknown data (no readable config.yaml)"
    raise OutputError(f"--out {out} holds a run {trained_on}; training {data} there would replace it. Choose a new "
                      "--out, pass --resume to continue that run, or --overwrite to replace it")


def check_resume_options(saved: RunConfig, cfg: RunConfig, out: Path | str, *, given_only: bool = False) -> None:
    """--resume continues the run in ``out`` only with the options that fixed its split and network.

    given_only: before the data is read, compare only values that are not left to ``auto`` / unset (the run
    stores resolved values); after it, ``cfg`` is resolved and every listed option must match."""
    diffs = []
    for section, name in RESUME_MUST_MATCH:
        new, old = getattr(getattr(cfg, section), name), getattr(getattr(saved, section), name)
        if given_only and new in (None, "auto"):
            continue
        if new != old:
            flag = "--model" if name == "backbone" else "--" + name.replace("_", "-")
            diffs.append(f"{flag} {new} (the run has {old})")
    if diffs:
        raise OutputError(f"--resume: {out} was trained with other options: {'; '.join(diffs)}. Resume with the "
                          f"run's own options (--config {Path(out) / CONFIG_FILE}), or train into a new --out")


def check_resume_labels(run: Path, names: tuple[str, ...] | list[str], head_size: int | None) -> None:
    """The data being resumed on has the run's labels (from model.json when present, else the checkpoint's head)."""
    meta = Path(run) / META_FILE
    if meta.is_file():
        try:
            old = json.loads(meta.read_text(encoding="utf-8")).get("labels")
        except (OSError, ValueError):
            old = None
        if isinstance(old, list) and list(old) != list(names):
            raise OutputError(f"--resume: {run} was trained on labels {old}, this data has {list(names)}; "
                              "resume with the run's data, or train into a new --out")
    if head_size is not None and head_size != len(names):
        raise OutputError(f"--resume: {run}'s checkpoint predicts {head_size} labels, this data has {len(names)} "
                          f"({', '.join(names)}); resume with the run's data, or train into a new --out")


def _check_writable(path: Path, option: str) -> None:
    """The nearest existing folder at or above ``path`` accepts a new file (a real probe: root ignores modes)."""
    probe_dir = Path(path)
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            return
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise OutputError(f"{option} {path}: {probe_dir} is a file, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe_dir, prefix=".labelwise-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"{option} {path}: cannot write in {probe_dir} ({e.strerror or e}); choose a writable "
                          "place") from None


# --- single output files -------------------------------------------------------------------------

def _ours(path: Path, kind: str) -> bool:
    """Whether an existing file is one labelwise wrote of this kind (so replacing it loses nothing of the user's)."""
    try:
        if kind == "json":
            d = json.loads(path.read_text(encoding="utf-8"))
            return isinstance(d, dict) and "model" in d and "baselines" in d
        if kind == "html":
            return b"labelwise report</title>" in path.read_bytes()[:4096]
        if kind == "csv":
            return path.read_bytes()[:64].startswith(b"image,labels,")
        if kind == "onnx":
            return b"labelwise." in path.read_bytes()
        if kind == "torchscript":
            with zipfile.ZipFile(path) as z:
                return any(n.endswith("extra/labelwise.json") for n in z.namelist())
    except (OSError, ValueError, zipfile.BadZipFile):
        return False
    return False


def check_output_file(path: str | Path, kind: str, overwrite: bool = False, option: str = "--out") -> Path:
    """Check a single output file before any work: never a bundle file, never a folder, an existing file only
    when labelwise wrote it (``kind``: json, html, csv, onnx, torchscript) or ``overwrite``; writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; give a file name, e.g. {path / _EXAMPLE[kind]}")
    if path.name in BUNDLE_FILES and (is_run_dir(path.parent) or path.name in (META_FILE, WEIGHTS_FILE)):
        raise OutputError(f"{option} {path} is a file of the model bundle in {path.parent}; writing there would "
                          f"destroy the model. Give another file name, e.g. {path.parent / _EXAMPLE[kind]}")
    if path.exists() and not _ours(path, kind) and not overwrite:
        raise OutputError(f"{option} {path} exists and was not written by labelwise; give a new file name, or pass "
                          "--overwrite to replace it")
    _check_writable(path.parent, option)
    return path


_EXAMPLE = {"json": "evaluation.json", "html": "report.html", "csv": "predictions.csv", "onnx": "model.onnx",
            "torchscript": "model.torchscript.pt"}


def check_bundle_out(out: str | Path, overwrite: bool, reading: list[str | Path] = ()) -> Path:
    """A folder a new bundle goes to (``labelwise ensemble --out``): never one of the runs being read, an
    existing run or non-empty folder only with ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; a bundle is a folder: give a new folder name")
    for run in reading:
        if out.exists() and _same_path(out, run):
            raise OutputError(f"--out {out} is one of the runs being combined; writing there would replace it. "
                              "Give a new folder, e.g. --out runs/ensemble")
    if out.exists() and any(out.iterdir()) and not overwrite:
        what = "holds a run" if is_run_dir(out) else "is a folder that is not empty"
        raise OutputError(f"--out {out} {what}; give a new folder, or pass --overwrite to replace its bundle")
    _check_writable(out, "--out")
    return out


# --- the run-directory lock ----------------------------------------------------------------------

def _child_rank() -> bool:
    """A non-zero rank of a distributed run: rank 0 holds the lock and writes the run directory."""
    return any(int(os.environ.get(k, "0") or 0) > 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


class RunLock:
    """Hold ``<run>/.labelwise.lock`` (flock(2), the holder's pid inside) while a process writes a run directory.

    A second writer gets an OutputError naming the holder's pid. A lock file left by a dead process is
    simply taken over (the kernel released its flock). Non-zero ranks of a distributed run do not lock."""

    def __init__(self, run: str | Path):
        self.run = Path(run)
        self.path = self.run / LOCK_FILE
        self.fd: int | None = None
        self.created_dir = False

    def __enter__(self) -> "RunLock":
        if _child_rank():
            return self
        self.created_dir = not self.run.exists()
        try:
            self.run.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"--out {self.run}: cannot create the folder ({e.strerror or e})") from None
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise OutputError(f"--out {self.run} is being written by another labelwise process (pid {holder}); "
                                  "wait for it to finish, or choose another --out") from None
            # the holder before us may have removed the file between our open and flock: lock the file at the path
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd = fd
                return self
            os.close(fd)
        raise OutputError(f"--out {self.run}: could not take the run lock {self.path}")

    def __exit__(self, *exc: Any) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)  # releases the flock
        self.fd = None
        if self.created_dir:  # nothing was written (e.g. the data failed to load): leave no empty folder
            with contextlib.suppress(OSError):
                self.run.rmdir()


# --- disks that fill up or turn read-only mid-write ----------------------------------------------

@contextlib.contextmanager
def disk_errors(where: str | Path, option: str = "--out") -> Iterator[None]:
    """Turn a full / read-only / forbidden disk while writing ``where`` into one clear OutputError."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        ours = e.filename is not None and Path(str(e.filename)).resolve().is_relative_to(Path(where).resolve())
        if e.errno not in DISK_ERRNOS or e.errno in (errno.EACCES, errno.EPERM) and not ours:
            raise  # e.g. an unreadable input file: not a problem of the output
        name = f" ({e.filename})" if e.filename else ""
        raise OutputError(f"{option} {where}: cannot write{name}: {e.strerror or os.strerror(e.errno)}; free some "
                          "space or choose a writable place") from None


@contextlib.contextmanager
def bundle_transaction(run: str | Path) -> Iterator[None]:
    """Writing a bundle (weights + model.json + ...): if it fails half-way, remove the bundle files written in it,
    so a later `predict` finds no bundle rather than new weights beside an old model.json."""
    run = Path(run)
    before = {n: _mtime(run / n) for n in (WEIGHTS_FILE, META_FILE)}
    try:
        yield
    except BaseException:
        if any(_mtime(run / n) != t for n, t in before.items()):
            for n in before:
                with contextlib.suppress(OSError):
                    (run / n).unlink()
        raise


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


# --- servers -------------------------------------------------------------------------------------

def check_port(host: str, port: int) -> None:
    """--port is 1-65535 and free on ``host`` (checked before the model is loaded)."""
    if not 1 <= port <= 65535:
        raise OutputError(f"--port {port} is not a port number; use 1-65535, e.g. --port 8000")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise OutputError(f"--host {host}: not an address this machine knows ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise OutputError(f"--port {port} on {host} is already in use (another server?); stop it or "
                                  "choose another --port") from None
            raise OutputError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e})") from None

