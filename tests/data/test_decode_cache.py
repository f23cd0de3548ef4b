"""The on-disk decode cache (labelwise/data/cache/) through decode_all / decode_samples: reused across
runs, invalidated by content, bit-identical to decoding, safe with two processes, harmless when broken."""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelwise.data import cache, images
from labelwise.data.cache import CACHE_TREE, cache_info, clear_cache, default_cache_dir, resolve_cache_dir
from labelwise.data.decoded import decode_all, decode_samples
from labelwise.data.samples import Samples
from labelwise.errors import ImageError
from labelwise.labels import LabelSpace

SIZE, CHANNELS = 16, 3


def _picture(seed: int, h: int = 30, w: int = 40, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 6 + seed * 17, y * 8 + seed * 5, (x + y) * 3 + seed], -1) % 256
    arr = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if mode == "L":
        return img.convert("L")
    if mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.fromarray((x * 6 % 256).astype(np.uint8)))
    return img


def _write(folder: Path, n: int, start: int = 0) -> list[Path]:
    """n small real images of mixed formats and modes (JPEG, PNG gray, PNG with alpha, WebP)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        kind = i % 4
        if kind == 0:
            p = folder / f"img{i:04d}.jpg"
            _picture(i).save(p, quality=90)
        elif kind == 1:
            p = folder / f"img{i:04d}.png"
            _picture(i, mode="L").save(p)
        elif kind == 2:
            p = folder / f"img{i:04d}.png"
            _picture(i, 24, 50, mode="RGBA").save(p)
        else:
            p = folder / f"img{i:04d}.webp"
            _picture(i, 33, 33).save(p, quality=80)
        paths.append(p)
    return paths


@pytest.fixture
def count_decodes(monkeypatch):
    """How many times images.read_resized ran, and on which paths."""
    calls: list[str] = []
    real = images.read_resized

    def counting(path, *args, **kwargs):
        calls.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images, "read_resized", counting)
    return calls


def _plain(paths, size=SIZE, channels=CHANNELS, **kw):
    return decode_all(paths, size, channels, **kw)


def _assert_served_from_the_repaired_cache(paths, cdir, ref, count_decodes, caplog):
    """The next run reads every image from the cache that the previous run repaired: no decode, no warning."""
    caplog.clear()
    count_decodes.clear()
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        again, _ = _plain(paths, cache_dir=cdir)
    assert count_decodes == [] and not caplog.records
    np.testing.assert_array_equal(again, ref)


def _samples(paths: list[Path]) -> Samples:
    targets = np.eye(2, dtype=np.uint8)[np.arange(len(paths)) % 2]
    return Samples(list(paths), targets, LabelSpace(("a", "b"), "multiclass"))


# --------------------------------------------------------------------------- reuse and invalidation


def test_second_run_decodes_nothing_and_is_bit_identical(tmp_path, count_decodes, caplog):
    paths = _write(tmp_path / "data", 24)
    ref, ref_bad = _plain(paths)
    assert not ref_bad
    count_decodes.clear()
    cdir = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="labelwise"):
        cold, bad = _plain(paths, cache_dir=cdir)
    assert len(count_decodes) == 24 and not bad
    np.testing.assert_array_equal(cold, ref)
    assert "decode cache: 0 of 24 images reused" in caplog.text
    count_decodes.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="labelwise"):
        warm, bad = _plain(paths, cache_dir=cdir)
    assert count_decodes == [] and not bad
    assert warm.dtype == np.uint8 and warm.shape == (24, CHANNELS, SIZE, SIZE)
    np.testing.assert_array_equal(warm, ref)
    assert f"decode cache: 24 of 24 images reused from {cdir / CACHE_TREE / '16x16x3'}" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # all hits in stored order: a read-only view of the cache file, which callers can fancy-index
    assert not warm.flags.writeable
    np.testing.assert_array_equal(warm[[5, 0, 5]], ref[[5, 0, 5]])
    # another order and a subset: gathered into a normal array, still no decoding
    order = [7, 3, 22, 0]
    sub, _ = _plain([paths[i] for i in order], cache_dir=cdir)
    np.testing.assert_array_equal(sub, ref[order])
    assert count_decodes == []


def test_changed_file_is_decoded_again_others_reused(tmp_path, count_decodes):
    paths = _write(tmp_path / "data", 12)
    cdir = tmp_path / "cache"
    _plain(paths, cache_dir=cdir)
    _picture(999).save(paths[4], format="JPEG", quality=70)  # new content, same name
    os.utime(paths[7], ns=(1, 1))  # touched only: rehashed, same content, so still a hit
    ref, _ = _plain(paths)
    count_decodes.clear()
    got, bad = _plain(paths, cache_dir=cdir)
    assert count_decodes == [os.fspath(paths[4])]
    assert not bad
    np.testing.assert_array_equal(got, ref)
    count_decodes.clear()
    _plain(paths, cache_dir=cdir)
    assert count_decodes == []
    assert cache_info(cdir)["sizes"]["16x16x3"]["images"] == 13  # the old content's row stays


def test_same_content_elsewhere_is_reused(tmp_path, count_decodes):
    paths = _write(tmp_path / "data", 6)
    cdir = tmp_path / "cache"
    _plain(paths, cache_dir=cdir)
    copies = []
    for p in paths:
        q = tmp_path / "copies" / ("renamed-" + p.name)
        q.parent.mkdir(exist_ok=True)
        shutil.copyfile(p, q)
        copies.append(q)
    count_decodes.clear()
    got, bad = _plain(copies, cache_dir=cdir)
    assert count_decodes == [] and not bad
    np.testing.assert_array_equal(got, _plain(paths)[0])
    # relative paths name the same files
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        rel = [Path("data") / p.name for p in paths]
        count_decodes.clear()
        got_rel, _ = _plain(rel, cache_dir=cdir)
    finally:
        os.chdir(cwd)
    assert count_decodes == []
    np.testing.assert_array_equal(got_rel, got)


def test_sizes_and_channels_are_separate_entries(tmp_path, count_decodes):
    paths = _write(tmp_path / "data", 8)
    cdir = tmp_path / "cache"
    for size, channels in [(16, 3), (16, 1), (24, 3)]:
        count_decodes.clear()
        got, _ = decode_all(paths, size, channels, cache_dir=cdir)
        assert len(count_decodes) == 8, (size, channels)
        np.testing.assert_array_equal(got, decode_all(paths, size, channels)[0])
    info = cache_info(cdir)
    assert set(info["sizes"]) == {"16x16x3", "16x16x1", "24x24x3"}
    assert all(s["images"] == 8 for s in info["sizes"].values())
    assert info["images"] == 24
    count_decodes.clear()
    for size, channels in [(16, 3), (16, 1), (24, 3)]:
        decode_all(paths, size, channels, cache_dir=cdir)
    assert count_decodes == []


def test_lower_max_pixels_is_checked_again(tmp_path, count_decodes):
    paths = _write(tmp_path / "data", 4)  # 1200 .. 1089 pixels each
    cdir = tmp_path / "cache"
    _plain(paths, cache_dir=cdir)
    ref, ref_bad = _plain(paths, max_pixels=1100)
    count_decodes.clear()
    got, bad = _plain(paths, cache_dir=cdir, max_pixels=1100)
    assert bad == ref_bad and len(bad) == 3 and len(count_decodes) == 4
    np.testing.assert_array_equal(got, ref)
    count_decodes.clear()
    assert _plain(paths, cache_dir=cdir, max_pixels=1100)[1] == ref_bad
    assert _plain(paths, cache_dir=cdir)[1] == {}
    assert count_decodes == []


# --------------------------------------------------------------------------- unreadable images


def test_unreadable_images_are_remembered_with_their_reason(tmp_path, count_decodes):
    paths = _write(tmp_path / "data", 6)
    broken = tmp_path / "data" / "broken.png"
    broken.write_bytes(b"not an image at all")
    truncated = tmp_path / "data" / "truncated.jpg"
    truncated.write_bytes(paths[0].read_bytes()[:200])
    missing = tmp_path / "data" / "missing.png"
    everything = paths[:3] + [broken, truncated, missing] + paths[3:]
    ref_samples, ref_pixels = decode_samples(_samples(everything), SIZE, CHANNELS)
    _, ref_bad = _plain(everything)
    assert set(ref_bad) == {broken, truncated, missing}
    cdir = tmp_path / "cache"
    for run in range(2):
        count_decodes.clear()
        got_samples, got_pixels = decode_samples(_samples(everything), SIZE, CHANNELS, cache_dir=cdir)
        assert got_samples.skipped == ref_samples.skipped
        assert got_samples.paths == ref_samples.paths
        np.testing.assert_array_equal(got_samples.targets, ref_samples.targets)
        np.testing.assert_array_equal(got_pixels, ref_pixels)
        # the second run retries only the file that is not there (it may have appeared meanwhile)
        assert len(count_decodes) == (9 if run == 0 else 1)
        with pytest.raises(ImageError, match="--strict"):
            decode_samples(_samples(everything), SIZE, CHANNELS, strict=True, cache_dir=cdir)
    # the same broken bytes under another name: the reason names the new path
    other = tmp_path / "data" / "other.png"
    shutil.copyfile(broken, other)
    count_decodes.clear()
    _, bad = _plain([other], cache_dir=cdir)
    assert count_decodes == [] and bad == {other: f"not an image, or an unsupported format: {other}"}
    assert cache_info(cdir)["sizes"]["16x16x3"]["unreadable"] == 2


# --------------------------------------------------------------------------- broken caches


def _size_dir(cdir: Path) -> Path:
    return cdir / CACHE_TREE / f"{SIZE}x{SIZE}x{CHANNELS}"


def test_garbage_index_warns_and_is_rebuilt(tmp_path, count_decodes, caplog):
    paths = _write(tmp_path / "data", 10)
    ref, _ = _plain(paths)
    cdir = tmp_path / "cache"
    _plain(paths, cache_dir=cdir)
    (_size_dir(cdir) / "index.sqlite").write_bytes(b"\x00garbage" * 500)
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, bad = _plain(paths, cache_dir=cdir)
    np.testing.assert_array_equal(got, ref)
    assert not bad
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(_size_dir(cdir) / "index.sqlite") in warning and "labelwise cache clear" in warning
    _assert_served_from_the_repaired_cache(paths, cdir, ref, count_decodes, caplog)


def test_damaged_pages_in_index_warn_and_are_rebuilt(tmp_path, count_decodes, caplog):
    paths = _write(tmp_path / "data", 40)
    ref, _ = _plain(paths)
    cdir = tmp_path / "cache"
    _plain(paths, cache_dir=cdir)
    index = _size_dir(cdir) / "index.sqlite"
    data = bytearray(index.read_bytes())
    assert len(data) >= 4 * 4096
    data[4096:] = np.random.default_rng(1).integers(0, 255, len(data) - 4096, dtype=np.uint8).tobytes()
    index.write_bytes(bytes(data))  # the header and schema page survive, the tables do not
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, bad = _plain(paths, cache_dir=cdir)
    np.testing.assert_array_equal(got, ref)
    assert not bad and str(index) in caplog.text
    _assert_served_from_the_repaired_cache(paths, cdir, ref, count_decodes, caplog)


def test_foreign_sqlite_file_is_not_trusted(tmp_path, caplog):
    paths = _write(tmp_path / "data", 4)
    d = _size_dir(tmp_path / "cache")
    d.mkdir(parents=True)
    with sqlite3.connect(d / "index.sqlite") as conn:
        conn.execute("CREATE TABLE entries (x)")
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, _ = _plain(paths, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(got, _plain(paths)[0])
    assert "unreadable" in caplog.text


def test_truncated_pixels_warns_and_repairs(tmp_path, count_decodes, caplog):
    paths = _write(tmp_path / "data", 10)
    ref, _ = _plain(paths)
    cdir = tmp_path / "cache"
    _plain(paths, cache_dir=cdir)
    data = _size_dir(cdir) / "pixels.u8"
    row = CHANNELS * SIZE * SIZE
    with open(data, "r+b") as f:
        f.truncate(6 * row + 100)  # rows 6.. are gone, row 6 half
    count_decodes.clear()
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, bad = _plain(paths, cache_dir=cdir)
    np.testing.assert_array_equal(got, ref)
    assert not bad and len(count_decodes) == 4
    assert "truncated" in caplog.text and str(data) in caplog.text
    _assert_served_from_the_repaired_cache(paths, cdir, ref, count_decodes, caplog)


def test_bytes_of_a_crashed_writer_are_ignored(tmp_path, count_decodes, caplog):
    """A writer that died after writing rows but before committing leaves bytes past the index."""
    paths = _write(tmp_path / "data", 8)
    ref, _ = _plain(paths)
    cdir = tmp_path / "cache"
    _plain(paths[:4], cache_dir=cdir)
    with open(_size_dir(cdir) / "pixels.u8", "ab") as f:
        f.write(np.random.default_rng(0).integers(0, 255, 3 * CHANNELS * SIZE * SIZE + 7, dtype=np.uint8))
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, _ = _plain(paths, cache_dir=cdir)
        count_decodes.clear()
        again, _ = _plain(paths, cache_dir=cdir)
    assert not caplog.records and count_decodes == []
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(again, ref)


def test_full_disk_still_decodes(tmp_path, monkeypatch, caplog):
    paths = _write(tmp_path / "data", 6)
    ref, _ = _plain(paths)

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.os, "pwrite", full)
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, _ = _plain(paths, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(got, ref)
    assert "No space left on device" in caplog.text and "cannot write" in caplog.text
    monkeypatch.undo()
    assert cache_info(tmp_path / "cache")["images"] == 0  # nothing half-indexed
    np.testing.assert_array_equal(_plain(paths, cache_dir=tmp_path / "cache")[0], ref)
    assert cache_info(tmp_path / "cache")["images"] == 6


def test_cache_dir_that_is_a_file(tmp_path, caplog):
    paths = _write(tmp_path / "data", 3)
    not_a_dir = tmp_path / "cache"
    not_a_dir.write_text("a file, not a folder")
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, bad = _plain(paths, cache_dir=not_a_dir)
    np.testing.assert_array_equal(got, _plain(paths)[0])
    assert not bad and str(not_a_dir) in caplog.text
    assert not_a_dir.read_text() == "a file, not a folder"


_READ_ONLY_CHILD = """
import json, logging, os, sys
import numpy as np
from pathlib import Path
from labelwise.data import images
from labelwise.data.decoded import decode_all
calls = []
real = images.read_resized
images.read_resized = lambda p, *a, **k: (calls.append(str(p)), real(p, *a, **k))[1]
logs = []
class Keep(logging.Handler):
    def emit(self, record): logs.append(record.getMessage())
logging.getLogger("labelwise").addHandler(Keep())
args = json.loads(sys.argv[1])
try:
    open(os.path.join(args["cache"], "decoded-v1", "probe"), "w")
    print(json.dumps({"writable": True}))
    sys.exit(0)
except PermissionError:
    pass
got, bad = decode_all([Path(p) for p in args["paths"]], 16, 3, cache_dir=Path(args["cache"]))
print(json.dumps({"writable": False, "equal": bool(np.array_equal(got, np.load(args["ref"]))),
                  "bad": len(bad), "decoded": len(calls), "logs": logs}))
"""


def test_read_only_cache_dir(tmp_path):
    """A populated cache that is read-only (a shared mount) still serves its hits; new images are decoded."""
    paths = _write(tmp_path / "data", 10)
    ref, _ = _plain(paths)
    np.save(tmp_path / "ref.npy", ref)
    cdir = tmp_path / "cache"
    _plain(paths[:6], cache_dir=cdir)
    command = [sys.executable, "-c", _READ_ONLY_CHILD]
    if os.geteuid() == 0:  # root ignores file modes: drop that power for the child
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    modes = {}
    for p in [cdir, *cdir.rglob("*")]:
        modes[p] = p.stat().st_mode
        p.chmod(stat.S_IMODE(modes[p]) & ~0o222)
    try:
        args = json.dumps({"cache": str(cdir), "paths": [str(p) for p in paths],
                           "ref": str(tmp_path / "ref.npy")})
        done = subprocess.run([*command, args], check=False, capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for p, mode in modes.items():
            p.chmod(stat.S_IMODE(mode))
    if result["writable"]:
        pytest.skip("could not make the cache read-only here")
    assert result["equal"] and result["bad"] == 0
    assert result["decoded"] == 4  # the 6 cached images were read, not decoded
    assert any("cannot write to the decode cache" in m for m in result["logs"]), result["logs"]


# --------------------------------------------------------------------------- two processes


def _fill(args) -> None:
    """Child: decode overlapping chunks of its list in its own order, then check the whole list."""
    paths, cdir, ref_file, order_seed, barrier = args
    barrier.wait(timeout=60)
    rng = np.random.default_rng(order_seed)
    chunks = np.array_split(rng.permutation(len(paths)), 5)
    for chunk in chunks:
        decode_all([paths[i] for i in chunk], SIZE, CHANNELS, cache_dir=cdir, workers=2)
    got, bad = decode_all(paths, SIZE, CHANNELS, cache_dir=cdir, workers=2)
    ok = not bad and np.array_equal(got, np.load(ref_file))
    os._exit(0 if ok else 3)


def test_two_processes_fill_one_cache(tmp_path, count_decodes):
    paths = _write(tmp_path / "data", 160)
    ref, _ = _plain(paths)
    cdir = tmp_path / "cache"
    lists = [paths[:110], paths[50:]]  # 60 images in common
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    barrier = ctx.Barrier(2)
    procs = []
    for k, part in enumerate(lists):
        ref_file = tmp_path / f"ref{k}.npy"
        np.save(ref_file, ref[:110] if k == 0 else ref[50:])
        procs.append(ctx.Process(target=_fill, args=((part, cdir, ref_file, k, barrier),)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    count_decodes.clear()
    got, bad = _plain(paths, cache_dir=cdir)
    assert count_decodes == [] and not bad
    np.testing.assert_array_equal(got, ref)
    info = cache_info(cdir)["sizes"]["16x16x3"]
    assert info["images"] == 160  # one row per image, though both processes decoded the shared 60
    assert info["bytes"] >= 160 * CHANNELS * SIZE * SIZE


def test_index_commit_cut_short_is_rolled_back(tmp_path, count_decodes, caplog):
    """A writer killed while committing leaves a hot journal; the next run rolls it back and reuses the cache."""
    paths = _write(tmp_path / "data", 8)
    ref, _ = _plain(paths)
    cdir = tmp_path / "cache"
    _plain(paths, cache_dir=cdir)
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    if ctx is None:
        pytest.skip("needs fork")
    p = ctx.Process(target=_half_commit, args=(_size_dir(cdir) / "index.sqlite",))
    p.start()
    p.join()
    assert (_size_dir(cdir) / "index.sqlite-journal").exists()
    count_decodes.clear()
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, bad = _plain(paths, cache_dir=cdir)
    assert not caplog.records and count_decodes == [] and not bad
    np.testing.assert_array_equal(got, ref)


def _half_commit(index: Path) -> None:
    conn = sqlite3.connect(index, isolation_level=None)
    conn.execute("PRAGMA cache_size = 1")  # spill pages to the file before the commit
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO stats VALUES (?, 0, 0, 0, x'00')", [(f"/junk/{i:08d}" * 8,) for i in range(5000)])
    conn.execute("DELETE FROM entries")
    os._exit(0)


def _fill_forever(paths, cdir) -> None:
    rng = np.random.default_rng(os.getpid())
    while True:
        idx = rng.choice(len(paths), size=30, replace=False)
        decode_all([paths[i] for i in idx], 48, 3, cache_dir=cdir, workers=1)


def test_writers_killed_at_any_moment_leave_a_usable_cache(tmp_path, caplog):
    """SIGKILL mid-append or mid-commit: the next run gets the right pixels, and the cache still fills."""
    import signal
    import time

    paths = _write(tmp_path / "data", 120)
    ref, _ = decode_all(paths, 48, 3)
    cdir = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = ctx.Process(target=_fill_forever, args=(paths, cdir))
        p.start()
        time.sleep(rng.uniform(0.3, 1.0))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        got, bad = decode_all(paths[:40], 48, 3, cache_dir=cdir, workers=1)
        assert not bad
        np.testing.assert_array_equal(got, ref[:40])
    with caplog.at_level(logging.WARNING, logger="labelwise"):
        got, _ = decode_all(paths, 48, 3, cache_dir=cdir)
    np.testing.assert_array_equal(got, ref)
    assert not caplog.records
    assert cache_info(cdir)["images"] == 120


# --------------------------------------------------------------------------- locations, info, clear


def test_cache_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("LABELWISE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "labelwise"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "labelwise"
    monkeypatch.setenv("LABELWISE_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    assert resolve_cache_dir(None) == resolve_cache_dir("auto") == tmp_path / "mine"
    assert resolve_cache_dir("off") is None and resolve_cache_dir("None") is None
    assert resolve_cache_dir(str(tmp_path / "x")) == tmp_path / "x"


def test_info_and_clear_only_touch_the_cache(tmp_path):
    cdir = tmp_path / "cache"
    cdir.mkdir()
    (cdir / "notes.txt").write_text("mine")
    (cdir / "onnx").mkdir()
    (cdir / "onnx" / "model.onnx").write_bytes(b"x" * 10)
    assert cache_info(cdir) == {"path": str(cdir), "bytes": 0, "images": 0, "sizes": {}}
    paths = _write(tmp_path / "data", 5)
    _plain(paths, cache_dir=cdir)
    decode_all(paths, 8, 1, cache_dir=cdir)
    info = cache_info(cdir)
    assert info["images"] == 10 and set(info["sizes"]) == {"16x16x3", "8x8x1"}
    assert info["bytes"] == sum(f.stat().st_size for f in (cdir / CACHE_TREE).rglob("*") if f.is_file())
    assert info["bytes"] > 5 * (CHANNELS * SIZE * SIZE + 64)
    freed = clear_cache(cdir)
    assert freed == info["bytes"]
    assert not (cdir / CACHE_TREE).exists()
    assert (cdir / "notes.txt").read_text() == "mine" and (cdir / "onnx" / "model.onnx").exists()
    assert clear_cache(cdir) == 0 and clear_cache(tmp_path / "nowhere") == 0
    assert cache_info(cdir)["images"] == 0
    np.testing.assert_array_equal(_plain(paths, cache_dir=cdir)[0], _plain(paths)[0])  # usable again


def test_no_cache_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELWISE_CACHE_DIR", str(tmp_path / "default"))
    paths = _write(tmp_path / "data", 3)
    _plain(paths)
    decode_samples(_samples(paths), SIZE, CHANNELS)
    assert not (tmp_path / "default").exists()
