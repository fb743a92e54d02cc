"""Sections share one signature and are numbered by the renderer; the prose follows the data source."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from pipeline.config import Params
from pipeline.report.build import build_report
from pipeline.report.context import ReportContext, build_context
from pipeline.report.render import Section
from pipeline.report.sections import SECTIONS
from pipeline.report.selection import DevPredictions
from tests.report.helpers import inputs, report

pytestmark = pytest.mark.usefixtures("fake_figures")


def test_every_section_has_the_one_signature() -> None:
    assert len(SECTIONS) == len(set(SECTIONS))
    for section in SECTIONS:
        sig = inspect.signature(section, eval_str=True)
        assert list(sig.parameters) == ["ctx"], section.__name__
        assert sig.parameters["ctx"].annotation is ReportContext and sig.return_annotation is Section
        assert section.__name__.endswith("_section")


def test_the_renderer_numbers_them_in_order() -> None:
    ctx = build_context(inputs((30, 3000), (300, 3000)), Params())
    built = [s(ctx) for s in SECTIONS]
    assert all(not re.match(r"\d", s.title) for s in built)  # no title carries its own number
    md = report((30, 3000), (300, 3000), Params()).markdown
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings[:2] == ["Next step", "Summary"]  # the lines at the top are not numbered
    numbered = [s.title for s in built if s.numbered]
    assert headings[2:] == [f"{i}. {t}" for i, t in enumerate(numbered, 1)]
    assert "```sh\ndvc exp run -S 'tune.space.l2_lambda.low=0.001'\n```" in md  # the next step, ready to copy


@pytest.mark.parametrize("source", ["folder", "hdf5", "npz"])
def test_no_digits_in_the_prose_of_other_sources(source: str) -> None:
    r = report((30, 3000), (300, 3000), Params(), source=source)
    assert "digit" not in r.markdown.lower() and "digit" not in r.html.lower()
    assert "`report.human_error`: set it to the error of a careful person on this data" in r.markdown
    assert f"Source: `{source}`" in r.markdown


def test_the_digits_note_for_digits() -> None:
    md = report((30, 3000), (300, 3000), Params(), source="digits").markdown
    assert "people misread about 0.5% of the 8x8 scikit-learn digits" in md
    assert "careful person on this data" not in md


def section_text(md: str, title: str) -> str:
    return re.split(r"^## ", md.split(f". {title}\n", 1)[1], flags=re.M)[0]


def test_the_data_section_names_both_distributions() -> None:
    found = inputs((0, 1000), (31, 100))
    found.metrics |= {"train_dev_error": 0.0, "n_train_dev": 100}
    found.sizes = {"train": 1000, "train_dev": 100, "dev": 100, "test": 100}
    found.balance["train_dev"] = {0: 50, 1: 50}
    target = {"source": "folder", "path": "data/raw/phone", "n_examples": 200, "target_train": 0.0, "in_train": 0}
    found.split = {"target": target, "distributions": {"dev": "target"}}
    r = build_report(build_context(found, Params()))
    data = section_text(r.markdown, "Data and split")
    assert "**Two distributions.** Train and train-dev come from the primary source `folder` (1100 examples)" in data
    assert "dev and test from the target, the distribution the model will serve: `folder` at `data/raw/phone`" in data
    assert r.summary["verdict"] == "data_mismatch" and r.summary["target"] == target
    assert r.summary["remedies"][0]["set"] == {"split.target_train": 0.2}
    assert "Collect or synthesize training data closer to the target" in section_text(
        r.markdown, "Verdict and remedies"
    )


def test_the_summary_counts_the_tied_trials() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 3000)
    pred = np.where(rng.random((6, 3000)) < np.array([0.9, 0.9, 0.9, 0.8, 0.7, 0.6])[:, None], y, (y + 1) % 10)
    found = inputs((30, 3000), (300, 3000))
    found.predictions = DevPredictions(np.arange(6), pred, y)
    r = build_report(build_context(found, Params()))
    sel = r.summary["selection"]
    assert set(sel) >= {"naive_best", "corrected", "interval", "tied_trials"} and sel["n_trials"] == 6
    assert set(sel["tied_trials"]) <= {0, 1, 2} and 3 not in sel["tied_trials"]
    summary = section_text_top(r.markdown, "Summary")
    assert f"{len(sel['tied_trials'])} of the 5 other finished trials are statistically indistinguishable" in summary
    assert "Selection-corrected dev error" in summary
    assert "Ties and the selection-corrected score" in r.markdown


def section_text_top(md: str, title: str) -> str:
    return re.split(r"^## ", md.split(f"## {title}\n", 1)[1], flags=re.M)[0]


def test_diagnosis_json_holds_the_new_parts() -> None:
    s = report((30, 3000), (300, 3000), Params()).summary
    assert {"selection", "stability", "gradient_health", "error_analysis", "pruning", "seed_averaged"} <= set(s)
    assert s["gaps"]["variance"]["method"] == "Newcombe" and s["gaps"]["variance"]["low"] > 0
    assert s["stability"]["configurations"] == [] and s["gradient_health"]["flag"] is None
