"""Stability over seeds: the best configurations retrained with other random streams.

A trial is one draw: its initial weights, batch order and dropout masks come from one seed. The
report stage retrains the ``report.stability_top_k`` finished trials with the lowest dev error
(from trials.csv) over ``report.stability_seeds`` seeds each and scores train (and train-dev) and
dev error. Seed 0 of trial ``number`` is the trial's own stream (``[params.seed, number]``, as
``study.space.trial_seed``): its train and dev error are read from trials.csv, not retrained, when
the trial scored on dev (``tune.cv_folds`` 0) and there is no train-dev split to score as well
(else it is retrained with that stream, which reproduces the trial). Seed ``s >= 1`` is
``np.random.default_rng([params.seed, number, 1000 + s])``: streams no trial uses, the same on every
rerun.

A configuration is **unstable** when a seed diverged, or when its *spread* exceeds the gap it is
diagnosed with. The spread is the larger range (max - min over the seeds) of its train and dev
error; the dev range counts only beyond the dev interval's half-width (Wilson, at the
configuration's mean dev error), because a dev set of a few dozen examples moves in whole examples
whatever the seed. The gap is the larger of avoidable bias and variance of its seed means (the
regime rule), and at least ``report.tolerance``: a spread within the tolerance is not worth acting
on either. The fits run in parallel where cores are free (``seeds.run_all``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import Params
from pipeline.report.inputs import ReportInputs, split_errors
from pipeline.report.seeds import Data, Job, SeedRun, fit_and_score, run_all
from pipeline.report.stats import estimate
from pipeline.report.trials import TrialRow, complete, trial_values
from pipeline.study.space import apply_params

SEED_OFFSET = 1000  # seed s >= 1 is [params.seed, number, SEED_OFFSET + s]
SPLITS = ("train", "train_dev", "dev")  # never test: evaluate is the only stage that opens it


def seed_entropy(seed: int, number: int, s: int) -> tuple[int, ...]:
    """What seeds the random stream of seed ``s`` of trial ``number``: the trial's own for s = 0."""
    return (seed, number) if s == 0 else (seed, number, SEED_OFFSET + s)


def _recorded(row: TrialRow, params: Params, splits: Sequence[str]) -> SeedRun | None:
    """Seed 0 as the study measured it, when trials.csv holds the same numbers a retrain would give."""
    if params.tune.cv_folds or "train_dev" in splits or row.train_error is None or row.dev_error is None:
        return None
    return SeedRun(0, {"train": float(row.train_error), "dev": float(row.dev_error)})


def seed_stream(seed: int, number: int, s: int) -> np.random.Generator:
    return np.random.default_rng(list(seed_entropy(seed, number, s)))


@dataclass(frozen=True)
class ConfigStability:
    trial: int
    values: dict[str, Any]
    runs: list[SeedRun]
    chosen: bool  # the final model's configuration
    human_error: float
    tolerance: float
    n_dev: int = 0  # dev examples, for the dev interval's half-width (0: every dev move counts)
    confidence: float = 0.95

    def _values(self, split: str) -> list[float]:
        return [r.errors[split] for r in self.runs if not r.diverged and split in r.errors]

    def mean(self, split: str) -> float | None:
        v = self._values(split)
        return float(np.mean(v)) if v else None

    def spread(self, split: str) -> float:
        v = self._values(split)
        return float(max(v) - min(v)) if v else 0.0

    @property
    def diverged(self) -> list[int]:
        return [r.seed for r in self.runs if r.diverged]

    @property
    def gap(self) -> tuple[str, float]:
        """The gap it is diagnosed with: the larger of avoidable bias and variance of the seed means."""
        train, dev = self.mean("train"), self.mean("train_dev") or self.mean("dev")
        if train is None:
            return "none", 0.0
        bias = train - self.human_error
        variance = (dev - train) if dev is not None else -1.0
        return ("avoidable_bias", bias) if bias >= variance else ("variance", variance)

    @property
    def effective_spread(self) -> float:
        dev = self.spread("dev")
        return max(self.spread("train"), dev if dev > self.dev_half_width else 0.0)

    @property
    def dev_half_width(self) -> float:
        """The Wilson half-width of the dev error at this configuration's mean rate."""
        mean = self.mean("dev")
        return estimate("dev", mean, self.n_dev, self.confidence).half_width if mean is not None and self.n_dev else 0.0

    @property
    def unstable(self) -> bool:
        return bool(self.diverged) or self.effective_spread > max(self.gap[1], self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        splits = [s for s in SPLITS if self.mean(s) is not None]
        return {
            "trial": self.trial,
            "chosen": self.chosen,
            "params": self.values,
            "seeds": len(self.runs),
            "diverged_seeds": self.diverged,
            **{f"{s}_error_mean": self.mean(s) for s in splits},
            **{f"{s}_error_spread": self.spread(s) for s in splits},
            "runs": [
                {"seed": r.seed, **r.errors, **({"diverged": r.diverged} if r.diverged else {})} for r in self.runs
            ],
            "gap": {"key": self.gap[0], "value": self.gap[1]},
            "spread": self.effective_spread,
            "unstable": self.unstable,
        }


def seed_runs(data: Data, config: Params, n_classes: int, entropies: Sequence[tuple[int, ...]]) -> list[SeedRun]:
    """Fit ``config`` on ``data["train"]`` (rows) once per stream, in this process, and score every split."""
    return [fit_and_score(data, Job(config, n_classes, tuple(e), s)) for s, e in enumerate(entropies)]


def top_trials(trials: Sequence[TrialRow], k: int) -> list[TrialRow]:
    """The ``k`` finished trials with the lowest dev error (the lower number first among equals)."""

    def dev(r: TrialRow) -> float:
        return r.dev_error if r.dev_error is not None else float(r.value)

    return sorted(complete(list(trials)), key=lambda r: (dev(r), r.number))[:k]


def stability_check(inputs: ReportInputs, params: Params) -> tuple[list[ConfigStability], list[str]]:
    """Retrain the top configurations (and the chosen one, the final model's, when it is not among them)
    over several seeds; return them and notes (why there are none)."""
    rp = params.report
    if rp.stability_seeds < 2:
        return [], [f"report.stability_seeds is {rp.stability_seeds}: the stability check is off"]
    if not inputs.trials:
        return [], [inputs.why_missing("trials") or "no trials"]
    classes = (inputs.meta or {}).get("classes")
    if "train" not in inputs.sizes or "dev" not in inputs.sizes or not classes:
        return [], [f"needs the train and dev splits and their classes: {inputs.why_missing('data', 'meta')}"]
    splits = [s for s in SPLITS if s in inputs.sizes]
    best = inputs.best or {}
    chosen = best.get("trial_number") if params.train.use_study_best else None
    rows = top_trials(inputs.trials, rp.stability_top_k)
    rows += [r for r in complete(inputs.trials) if r.number == chosen and r not in rows]
    found, _ = split_errors(inputs)
    n_dev = found["dev"][1] if "dev" in found else inputs.sizes["dev"]
    values = [trial_values(r) for r in rows]
    recorded = {r.number: _recorded(r, params, splits) for r in rows}
    jobs = [
        Job(apply_params(params, v), len(classes), seed_entropy(params.seed, r.number, s), s)
        for r, v in zip(rows, values, strict=True)
        for s in range(rp.stability_seeds)
        if not (s == 0 and recorded[r.number])
    ]
    fitted = iter(run_all(inputs.root, splits, jobs))
    out = []
    for r, v in zip(rows, values, strict=True):
        first = recorded[r.number]
        runs = ([first] if first else []) + [next(fitted) for _ in range(rp.stability_seeds - bool(first))]
        out.append(
            ConfigStability(r.number, v, runs, r.number == chosen, rp.human_error, rp.tolerance, n_dev, rp.confidence)
        )
    return out, []
