"""The pages users open, in headless Chromium with the network off: the report and the DVC plots page.

Assertions are on the DOM (images decode, each plot holds a canvas or SVG), on the pixels of a
screenshot (each image and plot draws something), and on the page's request log (nothing leaves
the machine). Each takes 3-5 s (Chromium starts once per module), so they are not marked slow.
The MLflow UI that ``pipeline ui`` starts is opened in tests/test_ui.py, beside the study it shows.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.paths import CONFUSION, DIAGNOSIS_HTML, TRAIN_HISTORY
from tests.browser import Browser

pytestmark = pytest.mark.slow  # a real browser: end to end

REPO = Path(__file__).resolve().parents[1]
VEGA = REPO / "vendor" / "vega"
TEMPLATE = VEGA / "plots.html"
TOP_LEVEL_PLOTS = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("screenshots")) as b:
        yield b


# --- the plots template: what it is made of ----------------------------------------------------


def _make_template():
    spec = importlib.util.spec_from_file_location("make_template", VEGA / "make_template.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dvc_config_names_the_offline_template_for_show_and_diff() -> None:
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        template = repo.config["plots"]["html_template"]
    assert (REPO / ".dvc" / template).resolve() == TEMPLATE  # DVC takes a relative path from .dvc/


def test_vendored_bundles_are_the_pinned_npm_files() -> None:
    rows = re.findall(r"\| `([\w.-]+\.min\.js)` \| (\d+) \| `([0-9a-f]{64})` \|", (VEGA / "README.md").read_text())
    assert {name for name, _, _ in rows} == {"vega.min.js", "vega-lite.min.js", "vega-embed.min.js"}
    for name, size, digest in rows:
        data = (VEGA / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size), digest), name
    for name in ("vega", "vega-lite", "vega-embed"):
        assert "BSD" in (VEGA / "README.md").read_text() and (VEGA / f"LICENSE.{name}").is_file()


def test_the_template_inlines_the_bundles_and_names_no_url() -> None:
    html = TEMPLATE.read_text(encoding="utf-8")
    assert html == _make_template().render(), "plots.html is stale: python vendor/vega/make_template.py"
    assert html.count("{plot_divs}") == 1 and "{scripts}" not in html  # {scripts}: DVC's CDN tags
    outside_scripts = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.DOTALL)
    assert not re.search(r"https?:|src=|href=|@import", outside_scripts), outside_scripts


@pytest.mark.parametrize("plot", TOP_LEVEL_PLOTS, ids=lambda p: next(iter(p)))
def test_each_top_level_plot_names_columns_its_file_has(plot: dict) -> None:
    (props,) = plot.values()
    for path, fields in props["y"].items():
        rows = json.loads((REPO / path).read_text())
        assert Path(path) in (TRAIN_HISTORY, CONFUSION) and rows
        for field in [props["x"], *([fields] if isinstance(fields, str) else fields)]:
            assert all(field in row for row in rows), f"{path} has no column {field}"


# --- in the browser ------------------------------------------------------------------------------


def test_the_report_opens_offline_and_every_image_decodes(browser: Browser) -> None:
    page = browser.page()
    page.open((REPO / DIAGNOSIS_HTML).as_uri())
    n = page.wait_for("Array.from(document.images).every(i => i.complete) && document.images.length")
    assert n >= 5  # cost curves, learning curve, regularization path, history, importances, confusion
    images = page.evaluate("Array.from(document.images).map(i => [i.alt || i.src.slice(0, 40), i.naturalWidth])")
    assert all(width > 0 for _, width in images), images
    shot = page.screenshot("report")
    for (name, _), box in zip(images, page.boxes("img"), strict=True):
        drawn, colours = shot.ink(box)
        assert drawn > 500 and colours > 8, f"{name}: {drawn} pixels drawn, {colours} colours ({shot.path})"
    assert page.requests_leaving() == []
    assert {u.split(":")[0] for u in page.requests()} <= {"file", "data"}


def _dvc_plots_page(tmp_path: Path) -> Path:
    """``dvc plots show`` in a copy of the repository's pipeline definition and committed reports."""
    for rel in (
        "dvc.yaml",
        "dvc.lock",
        "params.yaml",
        ".dvc/config",
        "vendor/vega/plots.html",
        TRAIN_HISTORY,
        CONFUSION,
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, tmp_path / rel)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = Path(sys.executable).with_name("dvc")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [str(dvc), "plots", "show", "-o", "plots"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = tmp_path / "plots" / "index.html"
    assert "cdn.jsdelivr.net" not in page.read_text(encoding="utf-8")
    return page


def test_the_dvc_plots_page_draws_every_plot_offline(browser: Browser, tmp_path: Path) -> None:
    page = browser.page()
    page.open(_dvc_plots_page(tmp_path).as_uri())
    plots = "Array.from(document.querySelectorAll('body > div[id]'))"
    ids = page.wait_for(f"{plots}.every(d => d.querySelector('canvas, svg')) && {plots}.map(d => d.id)")
    expected = [re.sub(r"[^A-Za-z0-9]", "_", next(iter(p))) for p in TOP_LEVEL_PLOTS]  # DVC's div ids
    assert set(expected) <= set(ids), ids
    shot = page.screenshot("dvc-plots")
    for plot_id, box in zip(ids, page.boxes("body > div[id] canvas, body > div[id] svg.marks"), strict=True):
        drawn, colours = shot.ink(box)
        assert drawn > 1000 and colours > 4, f"{plot_id}: {drawn} pixels drawn, {colours} colours ({shot.path})"
    assert page.requests_leaving() == [], page.requests_leaving()
