"""Links from the report to the study's runs in the MLflow UI, as plain strings.

The report does not talk to MLflow (docs/architecture.md): the report stage finds the UI's address
and the run ids and hands them over as ``RunLinks``. This module only spells MLflow 3's run-page
address and, when there is no address, how to browse the runs instead: a link to a UI that may not
be running, or to a run that is not there, would be a dead one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BROWSE = (
    "Browse the study's runs with `python -m pipeline ui`: it starts the MLflow UI on the tracking store and "
    "prints the address of the study's runs."
)


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page in MLflow 3's UI at ``base`` (no trailing slash)."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


@dataclass(frozen=True)
class RunLinks:
    """Where the best trial's run and the study's parent run are; "" for what is not known."""

    ui: str = ""  # the MLflow UI's base address (no trailing slash)
    experiment_id: str = ""  # the study's experiment (its trial runs and parent run share it)
    best_run_id: str = ""
    parent_run_id: str = ""  # the sweep's parent run the report stage attaches the report to
    note: str = ""  # why a link is missing

    @property
    def best_run(self) -> str:
        return self._url(self.best_run_id)

    @property
    def parent_run(self) -> str:
        return self._url(self.parent_run_id)

    def _url(self, run_id: str) -> str:
        return run_url(self.ui, self.experiment_id, run_id) if self.ui and self.experiment_id and run_id else ""

    def to_dict(self) -> dict[str, Any]:
        """diagnosis.json's ``links``: null for what is not known."""
        fields = {
            "experiment_id": self.experiment_id,
            "best_run_id": self.best_run_id,
            "best_run": self.best_run,
            "parent_run_id": self.parent_run_id,
            "parent_run": self.parent_run,
        }
        return {k: v or None for k, v in fields.items()}


def runs_line(links: RunLinks, trial: Any) -> str:
    """The report's line on the runs: Markdown links to both pages, else how to browse them and why."""
    found = []
    if links.best_run:
        found.append(f"[the best trial's run]({links.best_run}) (trial {trial})")
    if links.parent_run:
        found.append(
            f"[the study's parent run]({links.parent_run}) (the sweep's; it holds this report once the sweep ends)"
        )
    note = f" {links.note[0].upper()}{links.note[1:].rstrip('.')}." if links.note else ""
    if not found:
        return f"{BROWSE}{note}"
    return f"In the MLflow UI: {' and '.join(found)}.{note}"
