"""Markdown and self-contained HTML from the same sections; the curve reading."""

import re

from pipeline.report.curves import CurvePoint, read_curve
from pipeline.report.render import Code, Plot, Section, Table, headings, to_html, to_markdown

PNG = b"\x89PNG\r\n\x1a\nfake"


def sections() -> list[Section]:
    return [
        Section("Next step", numbered=False).add(Code("dvc exp run -S 'split.dev=0.2' <x>")),
        Section("Verdict").add("**High variance** on `tune.space.l2_lambda.low` <b>", ["one", "two"]),
        Section("Numbers").add(Table(["split", "error"], [["dev", "5.56% | x"]]), Plot(PNG, "a figure")),
    ]


def test_markdown_has_every_block() -> None:
    md = to_markdown("T", sections())
    assert md.startswith("# T\n")
    assert "## 1. Verdict" in md and "- two" in md
    assert "| split | error |" in md and "5.56% \\| x" in md
    assert "*Figure: a figure (see report.html).*" in md
    assert "```sh\ndvc exp run -S 'split.dev=0.2' <x>\n```" in md  # copyable as is


def test_the_renderer_numbers_the_sections() -> None:
    assert headings(sections()) == ["Next step", "1. Verdict", "2. Numbers"]
    inserted = [sections()[0], Section("New"), *sections()[1:]]
    assert headings(inserted) == ["Next step", "1. New", "2. Verdict", "3. Numbers"]  # nothing renumbered by hand
    page = to_html("T", sections())
    assert '<h2 id="1-verdict">1. Verdict</h2>' in page and '<a href="#2-numbers">2. Numbers</a>' in page


def test_html_is_self_contained_and_escaped() -> None:
    page = to_html("T", sections())
    assert "data:image/png;base64,iVBORw0KGgpmYWtl" in page  # the PNG bytes, embedded
    assert "<b>" not in page and "&lt;b&gt;" in page
    assert "<strong>High variance</strong>" in page and "<code>tune.space.l2_lambda.low</code>" in page
    assert not re.search(r"(src|href)=\"(?!data:|#)", page)  # nothing to fetch
    assert "http" not in page and "<script" not in page
    assert "<pre><code>dvc exp run -S 'split.dev=0.2' &lt;x&gt;</code></pre>" in page


def test_an_http_link_becomes_an_anchor_and_stays_markdown() -> None:
    url = "http://127.0.0.1:5000/#/experiments/7/runs/ab12"
    text = f"In the MLflow UI: [the best trial's run]({url}), not [this](file:///etc) nor [that](http://x/\"y)."
    page, md = to_html("T", [Section("Runs").add(text)]), to_markdown("T", [Section("Runs").add(text)])
    assert f'<a href="{url}">the best trial\'s run</a>' in page
    assert page.count("<a href=") == 2  # the section's own anchor in the contents, and the run
    # left as text: only http(s), and no quote to leave the href attribute by
    assert "[this](file:///etc)" in page and '[that](http://x/"y)' in page
    assert text in md


def pts(*rows: tuple[int, float, float]) -> list[CurvePoint]:
    return [CurvePoint(m / 1000, m, t, d) for m, t, d in rows]


def test_read_curve() -> None:
    assert "at least two" in read_curve(pts((100, 0.0, 0.3)), 0.005, 0.02)
    falling = read_curve(pts((100, 0.0, 0.30), (1000, 0.0, 0.10)), 0.005, 0.02)
    assert "more data of this kind should help" in falling
    flat_high = read_curve(pts((100, 0.20, 0.21), (1000, 0.20, 0.21)), 0.005, 0.02)
    assert "will not help" in flat_high
    flat_gap = read_curve(pts((100, 0.0, 0.10), (1000, 0.0, 0.10)), 0.005, 0.02)
    assert "regularize" in flat_gap
    # the same 10-point gap on a dev set with a 15-point half-width is not called open
    noisy = read_curve(pts((100, 0.0, 0.10), (1000, 0.0, 0.10)), 0.005, 0.02, dev_half_width=0.15)
    assert "within the dev set's noise" in noisy
    assert "met near the target" in read_curve(pts((100, 0.0, 0.01), (1000, 0.0, 0.01)), 0.005, 0.02)


def test_read_trials_in_both_layouts(tmp_path) -> None:
    from pipeline.report.trials import read_trials

    stage = tmp_path / "stage.csv"
    stage.write_text(
        "number,state,value,duration_s,keep_prob,l2,l2_lambda,n_units,dev_error,mlflow_run_id,train_error\n"
        "0,COMPLETE,0.05,1.5,0.7,off,,66,0.05,abc,0.01\n"
        "1,PRUNED,,0.2,0.9,on,0.3,17,,def,\n"
    )
    optuna_style = tmp_path / "optuna.csv"
    optuna_style.write_text(
        "number,value,duration,params_keep_prob,params_l2,params_n_units,state,user_attrs_dev_error,"
        "user_attrs_mlflow_run_id,user_attrs_train_error\n"
        "0,0.05,0 days 00:00:01.500000,0.7,off,66,COMPLETE,0.05,abc,0.01\n"
    )
    for path in (stage, optuna_style):
        first = read_trials(path)[0]
        assert first.params == {"keep_prob": 0.7, "l2": "off", "n_units": 66}
        assert (first.train_error, first.dev_error, first.run_id, first.seconds) == (0.01, 0.05, "abc", 1.5)
        assert first.state == "COMPLETE" and first.value == 0.05
    pruned = read_trials(stage)[1]
    assert pruned.state == "PRUNED" and pruned.value is None and pruned.params["l2_lambda"] == 0.3
