"""Sections share one signature and are numbered by the renderer; the prose follows the data source."""

from __future__ import annotations

import inspect
import re

import pytest

from pipeline.config import Params
from pipeline.report.context import ReportContext, build_context
from pipeline.report.render import Section
from pipeline.report.sections import SECTIONS
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
