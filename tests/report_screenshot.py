"""Render a labelwise report in headless Chromium: a full-page PNG plus a check for broken images.

``make report-screenshot`` runs this file: it builds a small real run (Fashion-MNIST mosaics,
cnn-small, a couple of epochs) unless one is given, writes its report, renders it and prints the
PNG's path. Also imported by tests/report/test_report.py.

    python tests/report_screenshot.py [RUN_DIR] [--out report.png] [--multiclass] [--gallery]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH = 1360  # px, the viewport: a laptop screen

# Open every collapsed part and make every lazy image load, then report each image's state.
_EXPAND_JS = """() => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  document.querySelectorAll('.gallery').forEach(g => g.classList.add('expanded'));
  document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });
}"""
_EAGER_JS = "() => document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })"
_ALL_LOADED_JS = "() => Array.from(document.images).every(i => i.complete)"
_IMAGES_JS = """() => Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                                         width: i.naturalWidth}))"""
_SECTIONS_JS = "() => Array.from(document.querySelectorAll('section[id]')).map(s => s.id)"


@dataclass
class Rendered:
    png: Path
    images: list[dict]  # {src, complete, width} for every <img>, after all were forced to load
    sections: list[str]  # ids of the <section> elements
    errors: list[str]  # console errors and failed requests

    @property
    def broken(self) -> list[str]:
        return [i["src"] for i in self.images if not i["complete"] or i["width"] == 0]


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is not None


def render(html: Path, png: Path, full_page: bool = True, expand: bool = False) -> Rendered:
    """Open ``html`` from disk in headless Chromium, screenshot it to ``png``, check every image.

    The screenshot shows the page as a person first sees it (``expand=False``); the image check
    then opens every collapsed gallery so that every thumbnail must load.
    """
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": WIDTH, "height": 900}, offline=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            page.goto(Path(html).resolve().as_uri(), wait_until="load")
            # A person scrolling sees every thumbnail; a full-page screenshot does not scroll, so
            # lazy images are made eager first (collapsed parts stay collapsed unless ``expand``).
            page.evaluate(_EXPAND_JS if expand else _EAGER_JS)
            page.wait_for_function(_ALL_LOADED_JS, timeout=30_000)
            png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(png), full_page=full_page)
            page.evaluate(_EXPAND_JS)
            page.wait_for_function(_ALL_LOADED_JS, timeout=30_000)
            images = page.evaluate(_IMAGES_JS)
            sections = page.evaluate(_SECTIONS_JS)
        finally:
            browser.close()
    return Rendered(Path(png), images, sections, errors)


_GALLERY_JS = """() => {
  document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });
  // maps on in the first gallery (highest loss) and the misses; the per-class strips keep their images
  const g = document.querySelectorAll('#galleries .gallery');
  [g[0], g[1]].forEach(x => x && x.querySelectorAll('.tile.has-map').forEach(t => t.classList.add('show-map')));
  return document.querySelectorAll('#galleries .tile.has-map').length;
}"""


def gallery_shot(html: Path, png: Path, width: int = 1400, height: int = 2000) -> int:
    """Screenshot the Galleries section (class-activation maps shown in its first galleries); returns
    how many gallery tiles have a map."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height}, offline=True)
        try:
            page = browser.new_page()
            page.goto(Path(html).resolve().as_uri(), wait_until="load")
            with_maps = page.evaluate(_GALLERY_JS)
            page.wait_for_function(_ALL_LOADED_JS, timeout=30_000)
            top = page.evaluate("() => document.getElementById('galleries').getBoundingClientRect().top + window.scrollY")
            png.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(png), full_page=True, clip={"x": 0, "y": top - 8, "width": width, "height": height})
        finally:
            browser.close()
    return int(with_maps)


def build_small_run(root: Path, multiclass: bool = False) -> Path:
    """A small real run on Fashion-MNIST (cnn-small, 4 epochs at 32 px): a minute or two on a laptop CPU."""
    import labelwise
    from labelwise.data.demo import build_mosaics, build_multiclass

    root.mkdir(parents=True, exist_ok=True)
    data = root / ("data-mc" if multiclass else "data-ml")
    run = root / ("run-mc" if multiclass else "run-ml")
    if not data.exists():
        if multiclass:
            build_multiclass(data, 60, seed=1)
        else:
            build_mosaics(data, 600, seed=1, classes=("tshirt", "trouser", "bag", "sneaker", "dress"))
    if not (run / "val_predictions.csv").is_file():
        labelwise.train(data, out=run, epochs=4, backbone="cnn-small", pretrained=False, progress=False,
                        image_size=32, batch_size=32)
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", type=Path, help="a run directory (default: build a small one)")
    ap.add_argument("--out", type=Path, help="PNG to write (default: RUN/report.png)")
    ap.add_argument("--multiclass", action="store_true", help="build the small multi-class run instead")
    ap.add_argument("--work", type=Path, default=Path("runs/report-screenshot"), help="where a small run is built")
    ap.add_argument("--viewport", action="store_true", help="only the first screen, not the full page")
    ap.add_argument("--gallery", action="store_true", help="only the Galleries section, with maps shown")
    args = ap.parse_args(argv)
    if not chromium_available():
        print(f"no Chromium at {CHROMIUM}; install the Debian package chromium", file=sys.stderr)
        return 1
    from labelwise.report import build_report

    run = args.run or build_small_run(args.work, args.multiclass)
    html = build_report(run)
    if args.gallery:
        gallery_shot(html, args.out or run / "report_gallery.png")
        print(args.out or run / "report_gallery.png")
        return 0
    result = render(html, args.out or run / "report.png", full_page=not args.viewport)
    for e in result.errors:
        print(f"browser: {e}", file=sys.stderr)
    if result.broken:
        print(f"{len(result.broken)} broken images, e.g. {result.broken[:3]}", file=sys.stderr)
        return 1
    print(result.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
