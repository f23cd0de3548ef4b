"""Nothing a user types destroys work: every output path is checked before any work starts (labelwise.outputs)."""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from labelwise.cli import main
from labelwise.config import DataConfig, RunConfig
from labelwise.errors import DataError
from labelwise.labels import LabelSpace
from labelwise.outputs import (
    LOCK_FILE,
    OutputError,
    RunLock,
    bundle_transaction,
    check_output_file,
    check_run_dir,
    disk_errors,
)
from labelwise.training.prepare import check_training_split

FAST = ["--epochs", "1", "--model", "cnn-small", "--no-pretrained", "--quiet", "--cache", "off", "--no-report"]


def tiny_folder(root: Path, classes=("a", "b", "c"), n_per_class: int = 12, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 60, (size, size), dtype=np.uint8)
            img[k * size // len(classes):(k + 1) * size // len(classes)] += 150
            Image.fromarray(img).save(root / name / f"{name}_{i}.png")
    return root


def fake_run(run: Path, data: Path, **train) -> Path:
    """A run directory as `train` leaves it (config.yaml naming its data, model.json, checkpoints/)."""
    run.mkdir(parents=True)
    cfg = RunConfig(out=str(run), data=DataConfig(data=str(data.resolve())))
    cfg.save(run / "config.yaml")
    (run / "model.json").write_text('{"format_version": 1, "labels": ["a", "b", "c"]}\n')
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"old run")
    return run


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["labelwise", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    return e.value.code, " ".join((captured.err + captured.out).split())


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = tiny_folder(tmp_path / "data")
    other = tiny_folder(tmp_path / "other", classes=("x", "y"))
    run = fake_run(tmp_path / "run", data)
    return SimpleNamespace(root=tmp_path, data=data, other=other, run=run)


def test_evaluate_never_writes_over_the_bundle(world, monkeypatch, capsys):
    before = snapshot(world.run)
    code, err = cli(monkeypatch, capsys, "evaluate", world.run, world.data, "--out", world.run / "model.json")
    assert code == 2 and "file of the model bundle" in err and "Traceback" not in err
    assert snapshot(world.run) == before


def test_train_on_other_data_refuses_to_replace_a_run(world, monkeypatch, capsys):
    before = snapshot(world.run)
    code, err = cli(monkeypatch, capsys, "train", world.other, "--out", world.run, *FAST)
    assert code == 2 and "holds a run trained on" in err and "--overwrite" in err
    assert snapshot(world.run) == before
    # --overwrite is the way to replace it; the same data replaces without asking (the default runs/run)
    assert check_run_dir(world.run, world.other, resume=False, overwrite=True).action == "replace"
    assert check_run_dir(world.run, world.data, resume=False, overwrite=False).action == "replace"


def test_resume_on_other_data_or_options_touches_nothing(world, monkeypatch, capsys):
    before = snapshot(world.run)
    code, err = cli(monkeypatch, capsys, "train", world.other, "--resume", "--out", world.run, *FAST)
    assert code == 2 and "--resume" in err and "was trained on" in err
    code, err = cli(monkeypatch, capsys, "train", world.data, "--resume", "--out", world.run, "--seed", "3", *FAST)
    assert code == 2 and "--seed 3 (the run has 0)" in err
    assert snapshot(world.run) == before  # config.yaml not rewritten, checkpoints kept


def test_out_inside_the_data_folder_is_refused(world, monkeypatch, capsys):
    code, err = cli(monkeypatch, capsys, "train", world.data, "--out", world.data / "run", *FAST)
    assert code == 2 and "inside the data folder" in err
    assert not (world.data / "run").exists()


def test_out_that_is_a_file_or_a_foreign_folder(world, monkeypatch, capsys):
    (world.root / "notes.txt").write_text("mine")
    code, err = cli(monkeypatch, capsys, "train", world.data, "--out", world.root / "notes.txt", *FAST)
    assert code == 2 and "is a file" in err
    foreign = world.root / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"jpeg")
    code, err = cli(monkeypatch, capsys, "train", world.data, "--out", foreign, *FAST)
    assert code == 2 and "did not write" in err and "--overwrite" in err
    assert (world.root / "notes.txt").read_text() == "mine" and sorted(os.listdir(foreign)) == ["holiday.jpg"]
    assert check_run_dir(foreign, world.data, resume=False, overwrite=True).action == "replace"


def test_a_live_lock_refuses_a_second_writer_and_a_dead_ones_is_taken_over(world):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom labelwise.outputs import RunLock\n"
                               f"with RunLock({str(world.run)!r}):\n    print('locked', flush=True)\n"
                               "    time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"being written by another labelwise process \\(pid {holder.pid}\\)"):
            with RunLock(world.run):
                pass
    finally:
        holder.kill()
        holder.wait()
    # the killed holder left its lock file behind (it never ran __exit__): taken over
    assert (world.run / LOCK_FILE).read_text().strip() == str(holder.pid)
    with RunLock(world.run):
        assert (world.run / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not (world.run / LOCK_FILE).exists()


def test_ensemble_report_predict_export_outputs(world, monkeypatch, capsys):
    second = fake_run(world.root / "run_b", world.data)
    code, err = cli(monkeypatch, capsys, "ensemble", world.run, second, "--out", world.run)
    assert code == 2 and "one of the runs being combined" in err
    mine = world.root / "page.html"
    mine.write_text("<html>my own page</html>")
    code, err = cli(monkeypatch, capsys, "report", world.run, "--out", mine)
    assert code == 2 and "not written by labelwise" in err and mine.read_text() == "<html>my own page</html>"
    photo = world.root / "photo.png"
    photo.write_bytes(b"\x89PNG precious")
    code, err = cli(monkeypatch, capsys, "predict", world.run, world.data, "--out", photo)
    assert code == 2 and "--overwrite" in err and photo.read_bytes() == b"\x89PNG precious"
    code, err = cli(monkeypatch, capsys, "predict", world.run, world.data, "--out", world.data)
    assert code == 2 and "is a folder" in err
    # files labelwise wrote are replaced without asking; --overwrite replaces any other file
    ours = world.root / "predictions.csv"
    ours.write_text("image,labels,a,b,c,error\n")
    assert check_output_file(ours, "csv") == ours
    assert check_output_file(photo, "csv", overwrite=True) == photo
    with pytest.raises(OutputError, match="model bundle"):
        check_output_file(world.run / "config.yaml", "json", overwrite=True)


def test_serve_port_checked_before_the_model_loads(world, monkeypatch, capsys):
    code, err = cli(monkeypatch, capsys, "serve", world.run, "--port", "99999")
    assert code == 2 and "1-65535" in err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = cli(monkeypatch, capsys, "serve", world.run, "--port", str(port))
    assert code == 2 and "already in use" in err and "serving" not in err


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_read_only_out_is_one_clear_error(world, monkeypatch, capsys):
    ro = world.root / "ro"
    if _mount_tmpfs(ro, "size=1m,ro"):  # a real read-only file system (root ignores permission bits)
        try:
            code, err = cli(monkeypatch, capsys, "train", world.data, "--out", ro / "run", *FAST)
        finally:
            subprocess.run(["umount", str(ro)])
    else:  # no mount here: the OS refuses every new file, as a read-only disk does
        def refuse(*a, **k):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr("labelwise.outputs.tempfile.mkstemp", refuse)
        code, err = cli(monkeypatch, capsys, "train", world.data, "--out", ro / "run", *FAST)
    assert code == 2 and "cannot write" in err and "Read-only file system" in err and "Traceback" not in err


@pytest.mark.slow
def test_a_disk_that_fills_during_training_is_one_clear_error_and_no_bundle(world, tmp_path):
    full = tmp_path / "full"
    if not _mount_tmpfs(full, "size=3m"):  # a checkpoint of cnn-small is ~8 MB
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        r = subprocess.run([sys.executable, "-m", "labelwise", "train", str(world.data), "--out", str(full / "run"),
                            *FAST], capture_output=True, text=True, timeout=600)
        left = sorted(os.listdir(full / "run")) if (full / "run").is_dir() else []
    finally:
        subprocess.run(["umount", str(full)])
    err = " ".join(r.stderr.split())
    assert r.returncode == 2 and "No space left on device" in err and "Traceback" not in err, err[-2000:]
    assert "model.json" not in left and "model.safetensors" not in left


def test_a_bundle_write_that_fails_half_way_leaves_no_bundle(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text("old")
    (run / "model.safetensors").write_bytes(b"old weights")
    with pytest.raises(OutputError, match="No space left"):
        with disk_errors(run), bundle_transaction(run):
            time.sleep(0.01)
            (run / "model.safetensors").write_bytes(b"new weights")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run / "model.json"))
    assert not (run / "model.json").exists() and not (run / "model.safetensors").exists()
    # an error that is not about the disk passes through unchanged
    with pytest.raises(OSError) as e:
        with disk_errors(run):
            raise OSError(errno.EACCES, "Permission denied", str(tmp_path / "data" / "img.png"))
    assert not isinstance(e.value, OutputError)


def test_data_that_cannot_make_a_classifier(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    one = tiny_folder(tmp_path / "one", classes=("only",))
    code, err = cli(monkeypatch, capsys, "train", one, "--out", tmp_path / "r1", *FAST)
    assert code == 2 and "only one class" in err
    dots = tiny_folder(tmp_path / "dots", classes=("a", "b"), size=1)
    code, err = cli(monkeypatch, capsys, "train", dots, "--out", tmp_path / "r2", *FAST)
    assert code == 2 and "1x1 px" in err and "too small" in err
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()  # no empty run folder left behind
    # a class whose images all went to validation
    labels = LabelSpace(("a", "b", "c"), "multiclass")
    targets = np.eye(3, dtype=np.uint8)[[0, 0, 1, 1, 2]]
    prep = SimpleNamespace(labels=labels, samples=SimpleNamespace(targets=targets),
                           cfg=RunConfig(data=DataConfig(data="DATA")), warnings=[])
    with pytest.raises(DataError, match="'c' \\(1 image in all\\) got no image in the training split"):
        check_training_split(prep, np.array([0, 1, 2, 3]))
    check_training_split(prep, np.array([0, 2, 4]))


def test_ctrl_c_in_any_command_is_exit_130_with_one_line(world, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("labelwise.infer.predict.Predictor.load", interrupted)
    code, err = cli(monkeypatch, capsys, "predict", world.run, world.data, "--out", world.root / "p.csv")
    assert code == 130 and err == "interrupted"
