"""The error-analysis report on small real runs (Fashion-MNIST, cnn-small): every section, every
image resolvable, planted label errors and train/validation copies found, and a headless-Chromium
render with no broken image."""
from __future__ import annotations

import csv
import html.parser
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

import labelwise
from labelwise.data.demo import build_mosaics, build_multiclass, fashion_available
from labelwise.errors import LabelwiseError
from labelwise.labels import LabelSpace
from labelwise.report import build_report
from labelwise.cli.report import report_command
from labelwise.report.analysis import mixups, verdict
from labelwise.report.label_issues import suggest
from labelwise.report.rundata import parse_label_cell

sys.path.insert(0, str(Path(__file__).parents[1]))
import report_screenshot  # noqa: E402  (a script beside this file, also run by `make report-screenshot`)

_fashion = pytest.mark.skipif(not fashion_available(), reason="Debian's dataset-fashion-mnist is not installed")


def needs_fashion(test):
    """Trains (or reuses) a small real run: marked slow, skipped without Fashion-MNIST."""
    return pytest.mark.slow(_fashion(test))
SECTIONS = ("summary", "run", "data", "training", "scores", "curves", "galleries", "label-errors", "leakage")
MOSAIC_CLASSES = ("trouser", "bag", "sneaker")
N_FLIPS = 20  # planted label errors: about 4 land in validation (20%)
N_COPIES = 12  # planted copies of training images: some straddle the split


def _train(data: Path, run: Path, epochs: int, **options) -> Path:
    labelwise.train(data, out=run, epochs=epochs, backbone="cnn-small", pretrained=False, progress=False,
                    image_size=32, batch_size=16, seed=0, **options)
    return run


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory):
    """Multi-label mosaics with planted label flips and planted copies, trained, then reported."""
    if not fashion_available():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("report-ml")
    data = build_mosaics(root / "data", 300, seed=5, classes=MOSAIC_CLASSES, source="fashion", empty_fraction=0.1)
    with open(data / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    # Flip: images showing exactly one trouser are labelled "bag" instead (a remove and an add).
    flipped = []
    for row in body:
        if row[1] == "trouser" and len(flipped) < N_FLIPS:
            row[1] = "bag"
            flipped.append(row[0])
    # Copies: re-encoded, slightly brighter duplicates of other images, with the same tags.
    copies = {}
    for row in [r for r in body if r[1] and r[0] not in flipped][:N_COPIES]:
        name = f"copy_{row[0].removesuffix('.png')}.jpg"
        img = ImageEnhance.Brightness(Image.open(data / "images" / row[0])).enhance(1.1)
        img.save(data / "images" / name, quality=80)
        copies[name] = row[0]
        body.append([name, row[1]])
    with open(data / "labels.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *body])
    run = _train(data, root / "run", epochs=5)  # good enough for cleanlab to see the flips
    html = build_report(run)
    return {"run": run, "html": html, "data": data, "flipped": flipped, "copies": copies}


@pytest.fixture(scope="module")
def mc_run(tmp_path_factory):
    if not fashion_available():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    root = tmp_path_factory.mktemp("report-mc")
    data = build_multiclass(root / "data", 40, seed=2, source="fashion")
    for folder in data.iterdir():  # four easy classes keep two epochs meaningful
        if folder.name not in ("trouser", "bag", "sneaker", "dress"):
            shutil.rmtree(folder)
    # non-default optimizer and schedule: the Run table must say what was used, not "AdamW"
    run = _train(data, root / "run", epochs=2, optimizer="sgd", lr=0.01, momentum=0.8, scheduler="step",
                 step_size=1, gamma=0.5)
    return {"run": run, "html": build_report(run), "data": data}


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start:html.index("</section>", start)]


class _Imgs(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs).get("src") or "")


def _img_srcs(text: str) -> list[str]:
    p = _Imgs()
    p.feed(text)
    return p.srcs


@needs_fashion
@pytest.mark.parametrize("fixture", ["ml_run", "mc_run"])
def test_every_section_and_image(fixture, request):
    r = request.getfixturevalue(fixture)
    html_path: Path = r["html"]
    assert html_path == r["run"] / "report.html"
    text = html_path.read_text(encoding="utf-8")
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in text, sid
    assert 'class="verdict' in text and "best trivial baseline" in text
    srcs = _img_srcs(text)
    assert len(srcs) > 20  # plots and thumbnails
    for src in srcs:
        assert not src.startswith(("http:", "https:", "//")), src  # nothing from the network
        assert (html_path.parent / src).is_file(), src
    # no external script, stylesheet or font either
    assert "<script src" not in text and "<link" not in text and "@import" not in text
    assert sorted(p.name for p in (r["run"] / "report_files").iterdir()) == ["maps", "plots", "thumbs"]


@needs_fashion
def test_multiclass_has_confusion_matrix_and_multilabel_has_label_counts(ml_run, mc_run):
    assert (mc_run["run"] / "report_files" / "plots" / "confusion.png").is_file()
    assert (ml_run["run"] / "report_files" / "plots" / "label_confusion.png").is_file()
    assert (ml_run["run"] / "report_files" / "plots" / "cooccurrence.png").is_file()
    for r in (ml_run, mc_run):
        scores = _section(r["html"].read_text(encoding="utf-8"), "scores")
        assert 'class="sortable perclass"' in scores
        metrics = json.loads((r["run"] / "metrics.json").read_text())
        for name in metrics["baselines"]:
            assert name.replace("_", " ") in scores  # baselines beside the model


@needs_fashion
def test_planted_label_error_is_listed(ml_run):
    val = {Path(row["image"]).name for row in csv.DictReader(open(ml_run["run"] / "val_predictions.csv"))}
    planted = [n for n in ml_run["flipped"] if n in val]
    assert planted, "no flipped image landed in validation; plant more"
    section = _section(ml_run["html"].read_text(encoding="utf-8"), "label-errors")
    found = [n for n in planted if n in section]
    assert found, f"none of the planted errors {planted} was flagged"
    # the suggested fix names the labels involved: the shown item is a trouser labelled "bag"
    assert "add &#39;trouser&#39;" in section or "remove &#39;bag&#39;" in section


@needs_fashion
def test_planted_copy_across_the_split_is_found(ml_run):
    val = {Path(row["image"]).name for row in csv.DictReader(open(ml_run["run"] / "val_predictions.csv"))}
    straddle = [(c, o) for c, o in ml_run["copies"].items() if (c in val) != (o in val)]
    assert straddle, "no planted copy straddles the split; plant more"
    section = _section(ml_run["html"].read_text(encoding="utf-8"), "leakage")
    for copy, original in straddle:
        assert copy in section and original in section, (copy, original)


def test_suggested_fixes():
    ml = LabelSpace(("bag", "dress", "coat"), "multilabel")
    given = np.array([False, True, False])
    pred = np.array([True, False, False])
    assert suggest(np.array([0.9, 0.05, 0.1]), given, pred, ml) == ["remove 'dress'", "add 'bag'"]
    assert suggest(np.array([0.3, 0.6, 0.1]), given, given, ml) == ["check 'dress'"]
    mc = LabelSpace(("bag", "dress", "coat"), "multiclass")
    onehot = np.array([False, True, False])
    assert suggest(np.array([0.1, 0.2, 0.7]), onehot, np.array([False, False, True]), mc) == ["relabel as 'coat'"]


@needs_fashion
def test_report_without_the_dataset_still_writes(mc_run, tmp_path):
    run = tmp_path / "moved-run"
    shutil.copytree(mc_run["run"], run, ignore=shutil.ignore_patterns("checkpoints", "report*"))
    cfg = (run / "config.yaml").read_text().replace(str(mc_run["data"]), str(tmp_path / "gone"))
    (run / "config.yaml").write_text(cfg)
    text = build_report(run).read_text(encoding="utf-8")
    assert "pass --data DATA" in _section(text, "leakage")
    for src in _img_srcs(text):
        assert (run / src).is_file()
    # --data brings the dataset back, and a rebuild leaves no stale or temporary folders
    text = build_report(run, data=mc_run["data"]).read_text(encoding="utf-8")
    assert "pass --data DATA" not in _section(text, "leakage") and "Dataset: " in _section(text, "data")
    assert sorted(p.name for p in run.iterdir() if p.name.startswith((".report", "report"))) == \
        ["report.html", "report_files"]


@needs_fashion
def test_cli_command(mc_run, tmp_path):
    app = typer.Typer()
    app.command("report")(report_command)
    app.command("noop")(lambda: None)  # two commands: typer then expects the command name
    out = tmp_path / "elsewhere" / "r.html"
    result = CliRunner().invoke(app, ["report", str(mc_run["run"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output.replace("\n", "")
    assert (out.parent / "r_files" / "plots").is_dir()
    for src in _img_srcs(out.read_text(encoding="utf-8")):
        assert (out.parent / src).is_file()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "no-run")])
    assert isinstance(bad.exception, LabelwiseError) and "no-run" in str(bad.exception)
    bad = CliRunner().invoke(app, ["report", str(mc_run["run"]), "--data", str(tmp_path / "nothing")])
    assert isinstance(bad.exception, LabelwiseError) and "--data" in str(bad.exception)


@needs_fashion
@pytest.mark.skipif(not report_screenshot.chromium_available(), reason="no Chromium at /usr/bin/chromium")
def test_renders_in_headless_chromium(ml_run, tmp_path):
    pytest.importorskip("playwright")
    shot = report_screenshot.render(ml_run["html"], tmp_path / "report.png")
    png = np.asarray(Image.open(shot.png).convert("L"))
    assert png.shape[1] >= report_screenshot.WIDTH and png.shape[0] > 3000  # the whole page
    assert png.std() > 20  # not blank
    assert set(SECTIONS) <= set(shot.sections)
    assert len(shot.images) > 20 and not shot.broken, shot.broken
    assert not shot.errors, shot.errors


@needs_fashion
def test_run_table_prints_every_option_that_shaped_the_run(mc_run):
    import yaml

    from labelwise.config import SECTIONS, flag_of

    run = _section(mc_run["html"].read_text(encoding="utf-8"), "run")

    def row(flag: str) -> str:
        start = run.index(f"<code>{flag}</code>")
        return run[start:run.index("</tr>", start)]
    # the value shown is the optimizer used (the option's help may name the others)
    assert ">adamw<" not in row("--optimizer").lower() and ">AdamW<" not in run
    assert ">sgd<" in row("--optimizer") and ">step<" in row("--scheduler")
    assert ">0.8<" in row("--momentum") and ">0.01<" in row("--lr") and ">0.5<" in row("--gamma")
    # every option of the schema that config.yaml records is shown, whatever its name
    cfg = yaml.safe_load((mc_run["run"] / "config.yaml").read_text())
    from dataclasses import fields
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if f.name in cfg[section]:
                assert f"<code>{flag_of(f)}</code>" in run, flag_of(f)
    # resolved values, not "auto": the backbone training picked and the loss it used
    assert ">cnn-small<" in row("--model") and ">auto<" not in row("--loss")


@needs_fashion
def test_gallery_images_carry_their_class_activation_maps(ml_run):
    html = ml_run["html"].read_text(encoding="utf-8")
    galleries = _section(html, "galleries")
    tiles = galleries.count('<figure class="tile')
    with_map = galleries.count(" has-map")
    assert tiles > 30 and with_map == tiles  # every readable gallery image has its map
    assert 'class="cam' in galleries and "map · " in galleries
    assert galleries.count("map · trouser") + galleries.count("map · bag") + galleries.count("map · sneaker") == with_map
    issues = _section(html, "label-errors")
    assert issues.count('<figure class="tile') == issues.count(" has-map") > 0  # suspected errors carry maps too
    files = ml_run["run"] / "report_files"
    maps = list((files / "maps").iterdir())
    assert 0 < len(maps) and all(m.stat().st_size < 20_000 for m in maps)  # thumbnails, not full images
    # the whole report (page + plots + thumbnails + maps) stays small enough to mail
    total = sum(p.stat().st_size for p in files.rglob("*") if p.is_file()) + ml_run["html"].stat().st_size
    assert total < 8_000_000, total
    # the toggle is in the page's own script
    assert 'classList.toggle("show-map")' in html


@needs_fashion
def test_training_curves_show_validation_and_training_sample(ml_run):
    html = ml_run["html"].read_text(encoding="utf-8")
    training = _section(html, "training")
    assert "metric_curves.png" in training and "fixed sample of training images" in training
    with open(ml_run["run"] / "history.csv", newline="") as f:
        row = next(csv.DictReader(f))
    for key in ("map", "f1_macro", "f1_micro", "f1_weighted", "exact_match", "hamming_accuracy",
                "precision_macro", "recall_macro"):
        assert key in row and f"train_{key}" in row, key
    scores = _section(html, "scores")
    assert "weighted" in scores.lower() and "P@10" in scores and "P@50" in scores
    galleries = _section(html, "galleries")
    assert "What the model misses most" in galleries and "scored 0." in galleries


def test_tail_precision():
    from labelwise.report.sections.scores import tail_precision

    probs = np.array([[0.9, 0.1], [0.8, 0.7], [0.2, 0.6], [0.1, 0.5]])
    targets = np.array([[1, 0], [0, 1], [0, 0], [1, 1]])
    assert tail_precision(probs, targets, 2) == [0.5, 0.5]
    assert tail_precision(probs, targets, 4) == [0.5, 0.5]
    assert tail_precision(probs, targets, 5) == [None, None]


def test_true_label_cells_with_spaces_in_names():
    labels = LabelSpace(("t shirt", "bag", "t"), "multilabel")
    assert parse_label_cell("t shirt bag", labels) == ["t shirt", "bag"]
    assert parse_label_cell("t bag", labels) == ["t", "bag"]
    assert parse_label_cell("", labels) == []
    with pytest.raises(LabelwiseError, match="coat"):
        parse_label_cell("bag coat", labels)


def test_verdict_levels():
    base = {"monitor": "map", "baselines": {"label_frequency": {"map": 0.30}, "predict_nothing": {"map": 0.25}}}
    good = verdict(base | {"model": {"map": 0.90}, "warnings": []})
    assert good.level == "good" and good.baseline == 0.30 and "0.900" in good.detail
    assert verdict(base | {"model": {"map": 0.90}, "warnings": ["something"]}).level == "warn"
    bad = verdict(base | {"model": {"map": 0.31}, "warnings": []})
    assert bad.level == "bad" and "no better than" in bad.detail
    assert verdict(base | {"model": {}, "warnings": []}).level == "unknown"


def test_mixups_count_swaps_and_drops():
    labels = LabelSpace(("a", "b", "c"), "multilabel")
    true = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], bool)
    pred = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]], bool)
    assert mixups(true, pred, labels) == [{"true": "a", "predicted": "b", "count": 2},
                                          {"true": "b", "predicted": "(nothing)", "count": 1},
                                          {"true": "(nothing)", "predicted": "c", "count": 1}]


def test_verdict_uses_the_interval_not_the_point():
    base = {"monitor": "map", "n_images": 200, "warnings": [], "model": {"map": 0.40},
            "baselines": {"label_frequency": {"map": 0.30}}, "intervals": {"map": [0.33, 0.47]}}
    sure = verdict(base | {"margin_interval": {"metric": "map", "baseline": "label_frequency", "margin": 0.10,
                                               "interval": [0.03, 0.17]}})
    assert sure.level == "good" and sure.margin_interval == [0.03, 0.17]
    assert "95% interval +0.030 to +0.170" in sure.detail
    # half-width 0.07 on 200 images -> 0.01 needs 49x as many
    assert sure.images_for_one_point == 9800 and "9,800 test images" in sure.detail
    # the same point margin whose interval reaches below 0 is not shown to be useful
    unsure = verdict(base | {"margin_interval": {"metric": "map", "baseline": "label_frequency", "margin": 0.10,
                                                 "interval": [-0.01, 0.2]}})
    assert unsure.level == "bad" and "could be chance" in unsure.detail


@needs_fashion
def test_an_interrupted_run_says_so_at_the_top(mc_run, tmp_path):
    """A bundle written after Ctrl-C / SIGTERM (metrics.json run.interrupted) gets a banner above the verdict, and
    `labelwise report` / `labelwise evaluate` say it on the terminal; a finished run gets neither."""
    from labelwise.cli import app as cli

    assert 'class="banner' not in mc_run["html"].read_text(encoding="utf-8")
    run = tmp_path / "stopped"
    shutil.copytree(mc_run["run"], run, ignore=shutil.ignore_patterns("checkpoints", "report*"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    metrics["run"].update(interrupted=True, epochs=1, best_checkpoint_epoch=1)
    metrics["notes"] = list(metrics.get("notes") or []) + [  # as labelwise/training/fit.py writes it
        "Training was stopped by SIGINT after 1 of 2 epochs; this bundle holds the best checkpoint so far (epoch 1). "
        "`labelwise train ... --resume` continues the run."]
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    summary = _section(build_report(run).read_text(encoding="utf-8"), "summary")
    assert 'class="banner interrupted"' in summary
    assert summary.index('class="banner interrupted"') < summary.index('class="verdict')  # first thing on the page
    assert "This run was interrupted at epoch 1 of 2; the model is the best so far (epoch 1)" in summary
    assert f"<code>labelwise train --config {run.resolve() / 'config.yaml'} --resume</code> continues it" in summary
    assert "Training was stopped by" not in summary  # said once, by the banner

    said = CliRunner().invoke(cli, ["report", str(run)])
    assert said.exit_code == 0, said.output
    flat = "".join(said.output.split())  # the terminal wraps lines anywhere, paths included
    assert "".join("interrupted: This run was interrupted at epoch 1 of 2".split()) in flat
    assert "".join(f"labelwise train --config {run / 'config.yaml'} --resume".split()) in flat
    scored = CliRunner().invoke(cli, ["evaluate", str(run), str(mc_run["data"]), "--out", str(tmp_path / "e.json")])
    assert scored.exit_code == 0, scored.output
    assert "".join("interrupted: This run was interrupted at epoch 1 of 2".split()) in "".join(scored.output.split())
    finished = CliRunner().invoke(cli, ["evaluate", str(mc_run["run"]), str(mc_run["data"]),
                                        "--out", str(tmp_path / "f.json")])
    assert finished.exit_code == 0, finished.output
    assert "Thisrunwasinterrupted" not in "".join(finished.output.split())


@needs_fashion
def test_run_table_states_bands_scaling_and_epochs_of_the_plan(mc_run, tmp_path):
    """The Run table's epochs row says "N of Y" (config.yaml train.epochs) and marks an interrupted run; a model
    with --bands / band scaling (model.json input) gets a row stating them; a plain run gets none."""
    def row(html: str, key: str) -> str | None:
        run = _section(html, "run")
        start = run.find(f"<tr><th>{key}</th>")
        return None if start < 0 else run[start:run.index("</tr>", start)]

    finished = mc_run["html"].read_text(encoding="utf-8")
    assert "<td>2 of 2 · best checkpoint" in row(finished, "epochs") and row(finished, "bands") is None
    run = tmp_path / "banded"
    shutil.copytree(mc_run["run"], run, ignore=shutil.ignore_patterns("checkpoints", "report*"))
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    metrics["run"].update(interrupted=True, epochs=1, best_checkpoint_epoch=1)
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    meta = json.loads((run / "model.json").read_text(encoding="utf-8"))
    meta["input"].update(bands=[1], scaling={"low": [812.0], "high": [3510.0]})  # gray PNGs: one band, 8-bit as is
    (run / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    html = build_report(run).read_text(encoding="utf-8")
    assert "<td>bands 1; per-band 1st-99th percentile scaling: 812..3510</td>" in row(html, "bands")
    assert "<td>1 of 2 · interrupted (Ctrl-C / SIGTERM): the model is the best checkpoint so far · best checkpoint: " \
        "epoch 1" in row(html, "epochs")
