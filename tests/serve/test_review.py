"""`labelwise review` at the API level: the token, decisions (append-only, reopened), hostile input
refused with nothing changed, and the export in each data format (tags CSV, one-hot CSV, folders)
read back by load_samples. Small real runs: Fashion-MNIST mosaics / classes, cnn-small, 2 epochs."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import labelwise
from labelwise.cli import app as cli_app
from labelwise.data.demo import build_mosaics, build_multiclass, fashion_available
from labelwise.data.sources import load_samples
from labelwise.errors import ConfigError
from labelwise.infer.suggest import suggest
from labelwise.serve.review.app import create_review_app
from labelwise.serve.review.export import export_labels, summary_path
from labelwise.serve.review.session import ReviewSession

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")]
CLASSES = ("trouser", "bag", "sneaker")
TOKEN = "test-token-123"
H = {"X-Review-Token": TOKEN}


def _train(data: Path, run: Path, size: int) -> Path:
    labelwise.train(data, out=run, epochs=2, backbone="cnn-small", pretrained=False, progress=False,
                    image_size=size, batch_size=16, seed=0)
    return run


@pytest.fixture(scope="module")
def ml(tmp_path_factory):
    """A multi-label mosaic run (tags CSV), a one-hot copy of its CSV, and a pool with a to-label list."""
    root = tmp_path_factory.mktemp("review-ml")
    data = build_mosaics(root / "data", 160, seed=3, classes=CLASSES, source="fashion", empty_fraction=0.1)
    run = _train(data, root / "run", 32)
    with open(data / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    onehot = root / "onehot"
    onehot.mkdir()
    names = sorted(CLASSES)
    with open(onehot / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", *names])
        for name, tags in rows:
            w.writerow([str(data / "images" / name), *("1" if n in tags.split() else "0" for n in names)])
    pool = build_mosaics(root / "pool", 40, split="test", seed=4, classes=CLASSES, source="fashion")
    suggest(run, pool / "images", n=5)
    return {"root": root, "data": data, "run": run, "onehot": onehot / "labels.csv", "pool": pool / "images"}


def _fresh(run: Path) -> None:
    """Forget earlier decisions: each test starts its own review."""
    (run / "review" / "decisions.jsonl").unlink(missing_ok=True)


def _client(session: ReviewSession) -> TestClient:
    return TestClient(create_review_app(session, TOKEN))


def _log_lines(run: Path) -> list[dict]:
    path = run / "review" / "decisions.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_queues_come_from_the_run(ml):
    _fresh(ml["run"])
    s = ReviewSession(ml["run"], who="tester")
    ov = s.overview()
    assert ov["labels"] == sorted(CLASSES) and ov["task"] == "multilabel"
    q = ov["queues"]
    # a 2-epoch model disagrees with many validation labels; every out-of-sample queue is non-empty
    assert q["loss"]["items"] and q["disagree"]["items"] and q["issues"]["items"]
    assert len(q["to-label"]["items"]) == 5
    assert all(x["id"].startswith("to-label/") and x["suggested"] is not None for x in q["to-label"]["items"])
    val = {it.key for it in s.items.values() if it.split == "validation"}
    assert {x["id"] for x in q["loss"]["items"]} <= val
    # highest loss first
    d = [s.detail(x["id"]) for x in q["loss"]["items"][:5]]
    assert all(x["probs_kind"] == "out-of-sample" for x in d)


def test_token_is_required(ml):
    _fresh(ml["run"])
    c = _client(ReviewSession(ml["run"], find_duplicates=False))
    assert c.get("/").status_code == 200  # the page itself holds no data
    assert TOKEN not in c.get("/").text
    assert c.get("/api/overview").status_code == 401
    assert c.get("/api/overview", headers={"X-Review-Token": "wrong"}).status_code == 401
    assert c.get("/api/overview", params={"token": TOKEN}).status_code == 200
    key = c.get("/api/overview", headers=H).json()["queues"]["loss"]["items"][0]["id"]
    body = {"image": key, "action": "exclude"}
    # a change needs the token in a header: a query token (what a link or a form could carry) is refused
    assert c.post("/api/decision", json=body, params={"token": TOKEN}).status_code == 401
    assert c.post("/api/decision", json=body).status_code == 401
    assert c.post("/api/export", params={"token": TOKEN}).status_code == 401
    assert _log_lines(ml["run"]) == []
    assert c.post("/api/decision", json=body, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert len(_log_lines(ml["run"])) == 1


def test_decisions_are_logged_and_reopened(ml):
    _fresh(ml["run"])
    s = ReviewSession(ml["run"], who="ana", find_duplicates=False)
    c = _client(s)
    items = s.overview()["queues"]["disagree"]["items"]
    a, b = items[0]["id"], items[1]["id"]
    r = c.post("/api/decision", json={"image": a, "action": "edit", "labels": ["bag", "trouser"], "queue": "disagree"},
               headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["item"]["labels"] == ["bag", "trouser"]
    assert c.post("/api/decision", json={"image": b, "action": "accept"}, headers=H).status_code == 200
    lines = _log_lines(ml["run"])
    assert [x["action"] for x in lines] == ["edit", "accept"]
    assert lines[0]["who"] == "ana" and lines[0]["time"] and lines[0]["image"] == a and lines[0]["queue"] == "disagree"
    assert lines[1]["labels"] == s.suggested(s.items[b])

    # a killed server: a torn half line at the end must not lose the decisions before it or after it
    with open(ml["run"] / "review" / "decisions.jsonl", "a") as f:
        f.write('{"image": "half')
    s2 = ReviewSession(ml["run"], who="ben", find_duplicates=False)
    assert s2.log.torn == 1
    done = {x["id"]: x["action"] for x in s2.overview()["queues"]["disagree"]["items"] if x["done"]}
    assert done == {a: "edit", b: "accept"}
    c2 = _client(s2)
    assert c2.post("/api/decision", json={"image": a, "action": "reset"}, headers=H).status_code == 200
    s3 = ReviewSession(ml["run"], find_duplicates=False)
    assert s3.log.get(a) is None and s3.log.get(b)["action"] == "accept"
    assert s3.detail(a)["labels"] == s3.given(s3.items[a])


@pytest.mark.parametrize("body,status", [
    ({"image": "IMG", "action": "edit", "labels": ["bagg"]}, 422),  # unknown label
    ({"image": "IMG", "action": "edit", "labels": "bag"}, 422),  # not a list
    ({"image": "IMG", "action": "edit", "labels": ["bag", "bag"]}, 422),
    ({"image": "IMG", "action": "delete"}, 422),  # unknown action
    ({"image": "IMG", "action": "exclude", "labels": ["bag"]}, 422),
    ({"image": "IMG", "action": "exclude", "extra": 1}, 422),
    ({"image": "../data/labels.csv", "action": "exclude"}, 400),
    ({"image": "images/../../run/model.json", "action": "exclude"}, 400),
    ({"image": "/etc/passwd", "action": "exclude"}, 400),
    ({"image": "C:\\Windows\\x.png", "action": "exclude"}, 400),
    ({"image": "not_there.png", "action": "exclude"}, 404),  # outside the data / not in it
    ({"image": "", "action": "exclude"}, 400),
    ({"image": 5, "action": "exclude"}, 400),
    (["not", "an", "object"], 422),
])
def test_hostile_decisions_change_nothing(ml, body, status):
    _fresh(ml["run"])
    s = ReviewSession(ml["run"], find_duplicates=False)
    c = _client(s)
    key = s.overview()["queues"]["loss"]["items"][0]["id"]
    if isinstance(body, dict) and body.get("image") == "IMG":
        body = dict(body, image=key)
    r = c.post("/api/decision", json=body, headers=H)
    assert r.status_code == status, r.text
    assert "error" in r.json()
    assert _log_lines(ml["run"]) == [] and s.log.latest == {}


def test_hostile_requests_change_nothing(ml):
    _fresh(ml["run"])
    s = ReviewSession(ml["run"], find_duplicates=False)
    c = _client(s)
    key = s.overview()["queues"]["loss"]["items"][0]["id"]
    ok = json.dumps({"image": key, "action": "exclude"})
    assert c.post("/api/decision", content=ok, headers=H | {"Content-Type": "text/plain"}).status_code == 415
    assert c.post("/api/decision", content="{not json", headers=H | {"Content-Type": "application/json"}).status_code == 400
    big = json.dumps({"image": key, "action": "exclude", "pad": "x" * 100_000})
    assert c.post("/api/decision", content=big, headers=H | {"Content-Type": "application/json"}).status_code == 413
    # images: only those of the data or the to-label list, never a path that climbs out
    for bad, code in [("../run/model.json", 400), ("/etc/passwd", 400), ("images/../../run/model.json", 400),
                      ("run/model.json", 404), ("to-label/../../etc/passwd", 400)]:
        assert c.get("/api/image", params={"id": bad}, headers=H).status_code == code, bad
        assert c.get("/api/item", params={"id": bad}, headers=H).status_code == code, bad
    r = c.get("/api/image", params={"id": key}, headers=H)
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert c.get("/api/cam", params={"id": key, "label": "nope"}, headers=H).status_code == 422
    assert _log_lines(ml["run"]) == []


def test_activation_map_when_available(ml):
    s = ReviewSession(ml["run"], find_duplicates=False)
    c = _client(s)
    key = s.overview()["queues"]["loss"]["items"][0]["id"]
    r = c.get("/api/cam", params={"id": key, "label": "bag"}, headers=H)
    try:
        import labelwise.infer.explain  # noqa: F401
    except ImportError:
        assert r.status_code == 404
    else:
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def _decide_some(c: TestClient, s: ReviewSession) -> dict[str, str]:
    """Relabel one, exclude one, confirm one, accept two to-label guesses; return their keys."""
    keys = [x["id"] for x in s.overview()["queues"]["loss"]["items"][:3]]
    pool = [x["id"] for x in s.overview()["queues"]["to-label"]["items"][:2]]
    new = ["sneaker"] if s.given(s.items[keys[0]]) != ["sneaker"] else ["bag"]
    for body in ({"image": keys[0], "action": "edit", "labels": new}, {"image": keys[1], "action": "exclude"},
                 {"image": keys[2], "action": "correct"}, {"image": pool[0], "action": "accept"},
                 {"image": pool[1], "action": "edit", "labels": ["bag", "trouser"]}):
        assert c.post("/api/decision", json=body, headers=H).status_code == 200
    return {"relabel": keys[0], "new": " ".join(new), "exclude": keys[1], "confirm": keys[2],
            "pool0": pool[0], "pool1": pool[1]}


def test_export_tags_csv(ml):
    _fresh(ml["run"])
    original = _sha(ml["data"] / "labels.csv")
    s = ReviewSession(ml["run"], find_duplicates=False)
    c = _client(s)
    k = _decide_some(c, s)
    r = c.post("/api/export", headers=H)
    assert r.status_code == 200, r.text
    summary = r.json()
    assert summary["counts"] == {"relabelled": 1, "excluded": 1, "confirmed": 1, "added": 2}
    out = Path(summary["file"])
    assert out == ml["run"] / "review" / "labels_reviewed.csv" and summary_path(out).is_file()
    assert _sha(ml["data"] / "labels.csv") == original  # the original is never modified
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "tags"]
    cells = {r[0]: r[1] for r in rows[1:]}
    assert cells[k["relabel"]] == k["new"]
    assert k["exclude"] not in cells
    assert len(rows) - 1 == len(s.samples.paths) - 1 + 2
    pool0 = str(s.items[k["pool0"]].path)
    assert cells[pool0] == " ".join(s.items[k["pool0"]].guess) and cells[str(s.items[k["pool1"]].path)] == "bag trouser"
    # the export is a dataset labelwise reads as it is
    back = load_samples(out, images=ml["data"] / "images")
    assert len(back) == len(s.samples.paths) + 1 and back.source == "csv-tags"
    # refusing to overwrite the original
    with pytest.raises(ConfigError):
        export_labels(s, ml["data"] / "labels.csv")
    assert _sha(ml["data"] / "labels.csv") == original


def test_export_onehot_csv(ml):
    _fresh(ml["run"])
    s = ReviewSession(ml["run"], data=ml["onehot"], find_duplicates=False)
    assert s.samples.source == "csv-onehot"
    c = _client(s)
    k = _decide_some(c, s)
    out = ml["root"] / "onehot_out.csv"
    summary = export_labels(s, out)
    assert summary["counts"]["excluded"] == 1
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    by = {Path(r["image"]).name: r for r in rows}
    row = by[Path(k["relabel"]).name]
    assert {n for n in sorted(CLASSES) if row[n] == "1"} == set(k["new"].split())
    assert Path(k["exclude"]).name not in by
    back = load_samples(out)
    assert back.source == "csv-onehot" and len(back) == len(s.samples.paths) + 1


def test_export_folder_data_and_cli(tmp_path):
    data = build_multiclass(tmp_path / "mc", 12, seed=2, source="fashion")
    run = _train(data, tmp_path / "run", 28)
    before = sorted(p.relative_to(data) for p in data.rglob("*.png"))
    s = ReviewSession(run, find_duplicates=False)
    c = _client(s)
    items = s.overview()["queues"]["loss"]["items"]
    a, b = items[0]["id"], items[1]["id"]
    # multi-class: exactly one label
    r = c.post("/api/decision", json={"image": a, "action": "edit", "labels": ["bag", "coat"]}, headers=H)
    assert r.status_code == 422
    assert c.post("/api/decision", json={"image": a, "action": "edit", "labels": ["bag"]}, headers=H).status_code == 200
    assert c.post("/api/decision", json={"image": b, "action": "exclude"}, headers=H).status_code == 200
    out = tmp_path / "fixed.csv"
    res = CliRunner().invoke(cli_app, ["review", str(run), "--export", str(out)])
    assert res.exit_code == 0, res.output
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "tags"]
    cells = {r[0]: r[1] for r in rows[1:]}
    assert cells[str(s.items[a].path)] == "bag"
    assert str(s.items[b].path) not in cells
    assert len(cells) == len(s.samples.paths) - 1
    assert sorted(p.relative_to(data) for p in data.rglob("*.png")) == before  # no file moved
    back = load_samples(out)
    assert len(back) == len(s.samples.paths) - 1
    t = back.targets[[str(p) for p in back.paths].index(str(s.items[a].path))]
    assert back.labels.names[int(np.argmax(t))] == "bag"
    # a user mistake is one line and exit code 2
    res = CliRunner().invoke(cli_app, ["review", str(run), "--export", str(tmp_path / "x.txt")])
    assert res.exit_code != 0


def test_sixteen_bit_images_are_shown_with_the_models_bands_and_scaling(tmp_path):
    """4-band 16-bit tiles around 3000 DN are grey level 12 after x / 257; the served PNG uses the run's
    --bands 4,3,2 and per-band percentile scaling, so band 4 (the signal) comes first and spans the range."""
    import io

    from PIL import Image
    from satellite import write_tiles

    from labelwise.data.images import read_image

    tiles = write_tiles(tmp_path / "tiles")
    run = tmp_path / "run"
    labelwise.train(tiles, out=run, epochs=1, backbone="cnn-small", pretrained=False, progress=False, batch_size=32,
                    cache="off", bands="4,3,2", seed=0)
    s = ReviewSession(run, find_duplicates=False)
    c = _client(s)
    shown = {}
    for label in ("bare", "vegetation"):
        key = next(k for k, it in s.items.items() if it.path.parent.name == label)
        r = c.get("/api/image", params={"id": key}, headers=H)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        shown[label] = np.asarray(Image.open(io.BytesIO(r.content))).astype(float)
        assert shown[label].shape == (12, 12, 3)
        np.testing.assert_array_equal(shown[label], read_image(s.items[key].path, pixel_spec=s.run.meta.pixel_spec))
        assert read_image(s.items[key].path).max() <= 13  # what the plain decode (x / 257) would have shown
    assert shown["bare"].mean() > 40 and shown["vegetation"].mean() > 40
    assert shown["vegetation"][..., 0].mean() > shown["bare"][..., 0].mean() + 60  # band 4 first, its 40 DN visible
