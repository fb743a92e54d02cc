"""Remedies in the data: a larger dev (and test) split, k-fold scoring of the trials, a train-dev
slice, and target data moved into training. Each one is sized from what the data has: never more
examples than exist, and with the interval the change will give.

Split sizing follows Ng's 60/20/20 for small data sets: dev (and test) above a fifth of the data
starve training, so a dev set is at most ``MAX_EVAL_FRACTION`` and training keeps at least
``MIN_TRAIN_FRACTION``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pipeline.config import Params
from pipeline.report.changes import Remedy
from pipeline.report.stats import ErrorEstimate, expected_half_width

MIN_TRAIN_FRACTION = 0.6
MAX_EVAL_FRACTION = 0.2
SPLIT_STEP = 0.01  # split fractions are proposed in whole percents
MAX_TRAIN_DEV_FRACTION = 0.25  # of the train split: a train-dev slice must leave most of it for training
COMPARABLE = 0.5  # a train-dev set this fraction of the dev set's size (or more) can be compared with it
CV_FOLDS = 5  # k for k-fold scoring of the trials
MIN_FOLD = 20  # examples per fold below which k-fold scores are too noisy to help
TARGET_TRAIN = 0.2  # the first share of the target data moved into training (course 2, week 2)
MAX_TARGET_TRAIN = 0.5  # dev and test keep at least half the target data

MISMATCH_NOTES = (
    "Collect or synthesize training data closer to the target distribution (the same kind of images as dev "
    "and test: source, resolution, lighting, preprocessing); no params.yaml key does that.",
    "Analyse the dev errors by hand (section *Error analysis*: the misclassified dev examples) to see what "
    "differs between the training data and the target, before collecting more.",
)


def _ceil_step(x: float) -> float:
    return round(math.ceil(round(x / SPLIT_STEP, 6)) * SPLIT_STEP, 2)


def eval_split(
    params: Params,
    sizes: Mapping[str, int],
    dev: ErrorEstimate,
    needed: int,
    tolerance: float,
    confidence: float,
    addresses: str,
) -> tuple[Remedy | None, str | None]:
    """A larger dev split (and test, for overfitting to dev) holding ``needed`` examples, or the most the
    data supports; None and a note when the split is already there."""
    split, total = params.split, sum(sizes.values())
    test_too = addresses == "dev_overfit"
    cap = MAX_EVAL_FRACTION if test_too else min(MAX_EVAL_FRACTION, round(1 - MIN_TRAIN_FRACTION - split.test, 2))
    want = _ceil_step(needed / total) if total else cap
    if test_too:  # overfitting to dev: a dev set picked from twice as many examples is harder to overfit
        want = max(want, _ceil_step(2 * split.dev))
    new = min(want, cap)
    c, tol = f"{100 * confidence:.0f}%", f"±{100 * tolerance:.1f} points"
    now = f"{dev.n} dev examples give ±{100 * dev.half_width:.1f} points at {c}"
    if total == 0 or new <= split.dev:
        return None, (
            f"A dev set that settles the diagnosis needs about {needed} examples; {now}, and `split.dev` "
            f"{split.dev:g} is already the most this data ({total} examples) supports with "
            f"{100 * MIN_TRAIN_FRACTION:.0f}% left for training. Only more data can narrow it."
        )
    changes: dict[str, Any] = {"split.dev": new}
    test = max(new, split.test) if test_too else split.test
    if test_too:
        changes["split.test"] = test
    changes["split.train"] = round(1 - new - test, 3)
    n_new = round(total * new)
    half = expected_half_width(dev.rate, n_new, confidence)
    why = f"{now}; `split.dev` {new:g} gives about {n_new} of the {total} examples (±{100 * half:.1f} points)"
    if want > cap:
        why += (
            f". About {needed} dev examples would settle the diagnosis (to {tol}), more than this data can give while "
            f"training keeps {100 * MIN_TRAIN_FRACTION:.0f}%: this is the largest dev set it supports"
        )
    return Remedy(changes, addresses, why), None


def cv_folds(params: Params, sizes: Mapping[str, int], dev: ErrorEstimate, confidence: float) -> Remedy | None:
    """k-fold scoring of the trials over the train split, when the dev set is too small to rank them."""
    n_train = sizes.get("train", 0)
    if params.tune.cv_folds or n_train < CV_FOLDS * MIN_FOLD:
        return None
    half = expected_half_width(dev.rate, n_train, confidence)
    why = (
        f"score each trial by {CV_FOLDS}-fold cross-validation over the {n_train} training examples (about "
        f"±{100 * half:.1f} points at {100 * confidence:.0f}%, against ±{100 * dev.half_width:.1f} on {dev.n} dev "
        "examples), so the study can rank its trials; the diagnosis still reads the untouched dev and test sets"
    )
    return Remedy({"tune.cv_folds": CV_FOLDS}, "trial_ranking", why)


def train_dev(
    params: Params, sizes: Mapping[str, int], min_ratio: float, addresses: str, notes: list[str]
) -> Remedy | None:
    """A train-dev slice about the dev set's size, or None (and a note) when the train split cannot give one."""
    n_dev, pool = sizes.get("dev", 0), sizes.get("train", 0) + sizes.get("train_dev", 0)
    if not n_dev or not pool:
        return None
    fraction = min(MAX_TRAIN_DEV_FRACTION, _ceil_step(n_dev / pool))
    n_new = round(pool * fraction)
    if n_new < min_ratio * n_dev:
        notes.append(
            f"A train-dev slice would hold at most {n_new} examples against {n_dev} dev examples (`split.train_dev` "
            f"{fraction:g} of {pool}): too few to compare with dev, so it is not proposed."
        )
        return None
    why = (
        f"a train-dev slice of about {n_new} examples (dev has {n_dev}), held out of training: "
        "variance = train-dev - train and data mismatch = dev - train-dev, measured apart"
    )
    return Remedy({"split.train_dev": fraction}, addresses, why)


def target_train(params: Params, target: Mapping[str, Any] | None) -> Remedy | None:
    """Move part of the target data into training (``split.target_train``), as the course suggests when
    target data is scarce: the network then sees the distribution it will serve."""
    if not target:
        return None
    now = params.split.target_train
    new = TARGET_TRAIN if now == 0 else round(min(MAX_TARGET_TRAIN, 2 * now), 2)
    if new <= now:
        return None
    n = target.get("n_examples")
    moved = f" (about {round(new * n)} of the {n} target examples)" if isinstance(n, int) else ""
    why = (
        f"move {new:g} of the target data into training{moved}, so the network trains on the distribution it "
        "will serve; dev and test keep the rest"
    )
    return Remedy({"split.target_train": new}, "data_mismatch", why)
