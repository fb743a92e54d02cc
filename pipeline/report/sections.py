"""The report's sections, in order. Each is ``def xxx_section(ctx: ReportContext) -> Section``; the
renderer numbers the ``numbered`` ones, so a new section is one function and one line here."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.report.context import ReportContext
from pipeline.report.render import Section
from pipeline.report.sections_compare import before_after_section
from pipeline.report.sections_evidence import selection_section, stability_section
from pipeline.report.sections_fit import (
    best_section,
    data_section,
    edges_section,
    errors_section,
    gaps_section,
    verdict_section,
)
from pipeline.report.sections_model import error_analysis_section, health_section
from pipeline.report.sections_study import (
    confusion_section,
    costs_section,
    effort_section,
    history_section,
    learning_curve_section,
    regimes_section,
    regularization_section,
)
from pipeline.report.sections_top import next_step_section, summary_section

SectionBuilder = Callable[[ReportContext], Section]

SECTIONS: tuple[SectionBuilder, ...] = (
    next_step_section,
    summary_section,
    data_section,
    best_section,
    errors_section,
    gaps_section,
    verdict_section,
    before_after_section,
    stability_section,
    selection_section,
    edges_section,
    learning_curve_section,
    costs_section,
    health_section,
    regularization_section,
    history_section,
    effort_section,
    regimes_section,
    error_analysis_section,
    confusion_section,
)
