"""What picking the best of many trials on one dev set is worth: ties, and a selection-corrected score.

From each finished trial's predictions on the same dev examples (``reports/study/dev_predictions.npz``,
written by the tune stage):

- **ties**: the trials statistically indistinguishable from the best one, by McNemar's exact test
  on the paired predictions (``stats.mcnemar_p``: the binomial test of the examples only one of
  the two gets wrong) at ``1 - report.confidence``. Each trial is tested against the best alone, with
  no correction for the number of tests: a trial reported as distinguishable may still be a fluke.
- **a selection-corrected score**: the bootstrap bias-corrected estimate (BBC, Tsamardinos,
  Greasidou and Borboudakis 2018, "Bootstrapping the out-of-sample predictions for efficient and
  accurate cross-validation"). Resample the dev examples with replacement; pick the trial with the
  lowest error on the resample (ties broken at random); score that trial on the examples the
  resample left out; average over the resamples. The interval is the percentile interval of those
  out-of-bag scores. The naive best (the minimum of many noisy scores) is optimistic; this is not.

The best trial is the one with the lowest dev error in the file (the lowest number among equals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.report.stats import mcnemar_p

BOOTSTRAPS = 1000
CHUNK = 200  # bootstrap samples drawn at a time: bounds the (samples x examples) count matrix


@dataclass(frozen=True)
class DevPredictions:
    """Each finished trial's predicted class per dev example (dev rows in data/split order)."""

    trial_numbers: np.ndarray  # (k,) int64
    predictions: np.ndarray  # (k, n_dev) class indices
    y_dev: np.ndarray  # (n_dev,) int64


@dataclass(frozen=True)
class Selection:
    best_trial: int
    naive_best: float  # the best trial's dev error: the minimum over the trials
    corrected: float  # the BBC estimate of the chosen configuration's error
    interval: tuple[float, float]  # percentile interval of the out-of-bag scores at report.confidence
    tied_trials: list[int]  # the other trials indistinguishable from the best (McNemar's p >= alpha)
    p_values: dict[int, float] = field(default_factory=dict)  # trial -> McNemar's p against the best
    dev_errors: dict[int, float] = field(default_factory=dict)  # trial -> its dev error
    n_dev: int = 0
    bootstraps: int = BOOTSTRAPS
    confidence: float = 0.95

    def to_dict(self) -> dict[str, object]:
        return {
            "best_trial": self.best_trial,
            "naive_best": self.naive_best,
            "corrected": self.corrected,
            "interval": list(self.interval),
            "tied_trials": self.tied_trials,
            "n_trials": len(self.dev_errors),
            "n_dev": self.n_dev,
            "bootstraps": self.bootstraps,
        }

    def metrics(self) -> dict[str, float]:
        """The numbers logged to the study's parent run."""
        return {
            "selection_naive_best": self.naive_best,
            "selection_corrected": self.corrected,
            "selection_corrected_low": self.interval[0],
            "selection_corrected_high": self.interval[1],
            "selection_tied_trials": float(len(self.tied_trials)),
        }


def ties(wrong: np.ndarray, best: int, alpha: float) -> dict[int, float]:
    """Row index -> McNemar's exact p against row ``best`` of the (trials, examples) wrong-answer matrix."""
    b = wrong[best]
    return {
        i: mcnemar_p(int(np.count_nonzero(row & ~b)), int(np.count_nonzero(~row & b)))
        for i, row in enumerate(wrong)
        if i != best
    }


def bbc(wrong: np.ndarray, rng: np.random.Generator, bootstraps: int = BOOTSTRAPS) -> np.ndarray:
    """The out-of-bag error of the configuration picked on each bootstrap sample (Tsamardinos et al. 2018)."""
    k, n = wrong.shape
    as_int = wrong.astype(np.int32)
    out = []
    for start in range(0, bootstraps, CHUNK):
        size = min(CHUNK, bootstraps - start)
        draws = rng.integers(0, n, size=(size, n))
        flat = (draws + n * np.arange(size)[:, None]).ravel()
        counts = np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.int32)
        in_bag = counts @ as_int.T  # (size, k) errors on each resample
        chosen = np.argmin(in_bag + rng.random((size, k)) * 0.5, axis=1)  # integers: the jitter only breaks ties
        oob = counts == 0
        n_oob = oob.sum(axis=1)
        keep = n_oob > 0  # a resample that drew every example leaves nothing to score (only for tiny n)
        oob_wrong = (wrong[chosen] & oob).sum(axis=1)
        out.append(oob_wrong[keep] / n_oob[keep])
    return np.concatenate(out)


def select(data: DevPredictions, confidence: float, seed: int, bootstraps: int = BOOTSTRAPS) -> Selection:
    """Ties and the BBC estimate from the trials' dev predictions; seeded by ``seed`` (params.seed)."""
    wrong = data.predictions != data.y_dev[None, :]
    errors = wrong.mean(axis=1)
    numbers = [int(t) for t in data.trial_numbers]
    best = int(np.lexsort((data.trial_numbers, errors))[0])
    alpha = 1.0 - confidence
    p = ties(wrong, best, alpha)
    scores = bbc(wrong, np.random.default_rng([seed, 0xBBC]), bootstraps)
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    return Selection(
        best_trial=numbers[best],
        naive_best=float(errors[best]),
        corrected=float(scores.mean()),
        interval=(float(low), float(high)),
        tied_trials=sorted(numbers[i] for i, v in p.items() if v >= alpha),
        p_values={numbers[i]: v for i, v in p.items()},
        dev_errors={t: float(e) for t, e in zip(numbers, errors, strict=True)},
        n_dev=int(wrong.shape[1]),
        bootstraps=bootstraps,
        confidence=confidence,
    )
