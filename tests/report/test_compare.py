"""Before and after: the loop diagnose -> apply next_command -> rediagnose, on constructed numbers."""

from __future__ import annotations

import re

import pytest

from pipeline.config import Params, params_from_dict
from pipeline.report.changes import as_raw, parse_command, with_changes
from pipeline.report.compare import compare, headline
from tests.report.helpers import report

TRAIN = (30, 3000)  # 1% train error on 3000 examples, both times

pytestmark = pytest.mark.usefixtures("fake_figures")


def section(md: str, title: str) -> str:
    return re.split(r"^## ", md.split(f". {title}\n", 1)[1], flags=re.M)[0]


def applied(previous: dict) -> Params:
    """params.yaml after running the previous diagnosis's next_command."""
    return params_from_dict(with_changes(as_raw(Params()), parse_command(previous["next_command"])))


@pytest.fixture(scope="module")
def before() -> dict:
    """High variance: 10% dev error against 1% train, on 3000 examples each."""
    summary = report(TRAIN, (300, 3000), Params()).summary
    assert summary["verdict"] == "high_variance" and summary["remedies"][0]["addresses"] == "variance"
    assert summary["next_command"] == "dvc exp run -S 'tune.space.l2_lambda.low=0.001'"
    return summary


def test_a_gap_that_shrank_beyond_its_interval(before: dict) -> None:
    after = report(TRAIN, (60, 3000), applied(before), previous=before)  # dev error 10% -> 2%
    c = after.summary["comparison"]
    assert c["verdict"] == {"before": "high_variance", "after": "good_fit", "changed": True}
    v = c["gaps"]["variance"]
    assert v["change"] == pytest.approx(-0.08) and v["significant"] and v["high"] < 0
    assert c["errors"]["dev"]["significant"] and not c["errors"]["train"]["significant"]
    assert c["applied"]["outcome"] == "met" and c["applied"]["applied"] == ["tune.space.l2_lambda.low"]
    assert after.summary["previous"]["variance"] == pytest.approx(0.09)
    assert after.summary["previous"]["next_command"] == before["next_command"]
    text = section(after.markdown, "Before and after")
    assert "Verdict: High variance (overfitting) -> Good fit." in text
    assert f"The previous next step `{before['next_command']}` was applied; it predicted:" in text
    assert "It did: variance went +9.00 -> +1.00 points (-8.00, interval [" in text
    assert "Moved beyond the intervals: variance (-8.00 points)." in text


def test_a_gap_that_shrank_within_the_noise(before: dict) -> None:
    after = report(TRAIN, (285, 3000), applied(before), previous=before)  # 10% -> 9.5%: half a point
    c = after.summary["comparison"]
    v = c["gaps"]["variance"]
    assert v["change"] == pytest.approx(-0.005) and not v["significant"] and v["low"] < 0 < v["high"]
    assert c["verdict"]["changed"] is False and c["applied"]["outcome"] == "not shown"
    text = section(after.markdown, "Before and after")
    assert "Verdict unchanged: High variance (overfitting)." in text
    assert "Not shown: variance went +9.00 -> +8.50 points (-0.50, interval [" in text
    assert "the interval includes 0, so the shrink may be noise" in text
    assert "Within the noise: " in text and "variance (-0.50)" in text


def test_a_change_not_applied_is_named(before: dict) -> None:
    after = report(TRAIN, (90, 3000), Params(), previous=before)  # params.yaml left as it was
    assert after.summary["comparison"]["applied"]["outcome"] == "not applied"
    assert after.summary["comparison"]["applied"]["not_applied"] == {"tune.space.l2_lambda.low": 0.0001}
    assert "was not applied: `tune.space.l2_lambda.low` is 0.0001" in section(after.markdown, "Before and after")


def test_first_report_and_headline_numbers_are_flat(before: dict) -> None:
    first = report(TRAIN, (300, 3000), Params())
    assert first.summary["previous"] is None and first.summary["comparison"] is None
    assert "Nothing to compare with" in section(first.markdown, "Before and after")
    for key in ("train_error", "n_train", "dev_error", "n_dev", "avoidable_bias", "variance", "dev_half_width"):
        assert isinstance(before[key], int | float), key  # top-level numbers: `dvc metrics diff` shows them


def test_a_diagnosis_json_from_before_the_flat_keys_is_read() -> None:
    old = {
        "verdict": "good_fit",
        "human_error": 0.005,
        "errors": {"train": {"rate": 0.01, "n": 1000}, "dev": {"rate": 0.1, "n": 100}},
        "gaps": {"variance": {"value": 0.09, "formula": "dev - train"}},
        "remedies": [{"problem": "high variance", "knob": "split.dev", "change": "0.2 -> 0.2"}],  # the old shape
    }
    h = headline(old)
    assert (h["train_error"], h["n_dev"], h["variance"], h["remedy"]) == (0.01, 100, 0.09, None)
    now = headline({**old, "gaps": {"variance": {"value": 0.09, "formula": "train-dev - train"}}})
    c = compare(h, now, Params())
    assert c.gaps_measured_differently == {"variance": ("dev - train", "train-dev - train")}
    assert not c.gaps["variance"].significant and c.gaps["variance"].low is None and c.applied is None


def test_a_change_of_data_is_said(before: dict) -> None:
    same_data = report(TRAIN, (90, 3000), applied(before), previous=before)
    assert same_data.summary["comparison"]["data"] == {
        "before": ["folder", 9000],
        "after": ["folder", 9000],
        "changed": False,
    }
    other = report((0, 446), (0, 5), Params(), previous=before, source="npz")
    assert other.summary["comparison"]["data"]["changed"] is True
    assert "**The data changed** since the previous diagnosis (`folder`, 9000 examples -> `npz`, 456)" in section(
        other.markdown, "Before and after"
    )


def test_a_gradient_remedy_is_met_when_the_flag_is_gone() -> None:
    previous = {
        "verdict": "vanishing_gradients",
        "train_error": 0.9, "n_train": 3000, "dev_error": 0.9, "n_dev": 3000,
        "remedies": [{"set": {"model.init": "xavier"}, "addresses": "gradients", "why": "Xavier"}],
        "next_command": "dvc exp run -S 'model.init=xavier'",
    }  # fmt: skip
    xavier = params_from_dict({"model": {"init": "xavier", "hidden_activation": "sigmoid"}})
    after = report(TRAIN, (300, 3000), xavier, previous=previous)
    assert after.summary["comparison"]["applied"]["outcome"] == "met"
    assert "It did: the gradient-health flag is gone." in section(after.markdown, "Before and after")
    unstable = {**previous, "remedies": [{"set": {"model.init": "xavier"}, "addresses": "stability"}]}
    again = report(TRAIN, (300, 3000), xavier, previous=unstable)  # no stability check ran: nothing to tell
    assert again.summary["comparison"]["applied"]["outcome"] == "unknown"
    assert "did not record the chosen configuration's instability" in section(again.markdown, "Before and after")
