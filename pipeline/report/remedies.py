"""From a verdict to the next run: each remedy is a concrete change of ``params.yaml`` keys.

Course 2, week 1: high bias -> a bigger network, train longer, less regularization; high variance
-> more data, more regularization; vanishing or exploding gradients -> initialization scaled by
the fan-in, a smaller step, fewer layers. *Machine Learning Yearning*: a dev set too small to tell
the gaps apart -> a bigger dev set first. Each remedy is ``set`` (dotted key -> new value), the
gap it ``addresses`` and ``why``; applied, it changes what the next ``dvc repro`` trains:

- a parameter the study searches is changed through its range (``tune.space.*``), a fixed one
  through its own key (``train.*``, ``model.*``); both are part of the study's fingerprint, so new
  trials run (a searched key comes from the best trial, a key it does not search from params.yaml);
- a key is never set to its current value, and every remedy passes ``pipeline.config``'s
  validation with the change applied;
- a split never asks for more examples than the data has (``remedies_data``).

What is not a params.yaml key (more data of the same kind, data that looks like the target) is a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.config import Params
from pipeline.report.changes import Remedy, as_raw, get_key, is_valid, new_keys, proposed, yaml_scalar
from pipeline.report.diagnosis import Diagnosis
from pipeline.report.edges import edge_warnings
from pipeline.report.remedies_data import (
    COMPARABLE,
    MIN_TRAIN_FRACTION,
    MISMATCH_NOTES,
    cv_folds,
    eval_split,
    target_train,
    train_dev,
)
from pipeline.report.remedies_fix import gradient_remedies, stability_remedies
from pipeline.report.stats import examples_needed

__all__ = ["ADDRESSES", "COMPARABLE", "MIN_TRAIN_FRACTION", "Remedy", "describe", "remedies"]

# Steps on the search space and the training keys.
RANGE_FACTOR = 3  # a learning-rate range around the best: best / 3 .. best * 3
L2_FACTOR = 10  # one decade of lambda
KEEP_PROB_STEP, KEEP_PROB_FLOOR = 0.2, 0.3
PATIENCE = 10  # epochs without a better dev cost before early stopping

# What a remedy is for: a gap of the diagnosis it should shrink, or the evidence it should add.
ADDRESSES = {
    "avoidable_bias": "the train error should fall toward human level",
    "variance": "the dev (or train-dev) error should fall toward the train error",
    "data_mismatch": "the dev error should fall toward the train-dev error",
    "dev_overfit": "the test error should fall toward the dev error",
    "dev_set": "the dev interval should narrow enough to tell the gaps apart",
    "trial_ranking": "the trials' scores should rest on more examples, so the study can rank them",
    "dev_error": "the dev error should fall a little further",
    "gradients": "the first layers' update ratio should come within reach of the last layer's",
    "stability": "the train and dev errors should vary less from seed to seed",
}


def remedies(
    diag: Diagnosis,
    best: Mapping[str, Any],
    params: Params,
    sizes: Mapping[str, int],
    target: Mapping[str, Any] | None = None,
    unstable: Mapping[str, Any] | None = None,
) -> tuple[list[Remedy], list[str]]:
    """The remedies for this diagnosis, most useful first, and notes on what no key can do.

    ``best`` is the best trial's parameters, ``sizes`` the examples per split and ``target`` the target
    distribution (reports/split.json); ``unstable`` the values of the chosen configuration when its
    errors swing across seeds (``stability``).
    """
    notes: list[str] = []
    evidence = _evidence(diag, params, sizes, notes)
    verdict, flag = diag.verdict, diag.gradient
    candidates: list[Remedy | None] = []
    if flag is not None and verdict == flag.verdict:
        candidates += gradient_remedies(flag, params, best)
    if unstable is not None:
        candidates += stability_remedies(params, unstable)
    # a range whose edge holds the best value is where the study was cut short: widen it first
    at_edge = {k for w in edge_warnings(best, params.tune.space) for k in w.change}
    bias = sorted(_bias(params, best), key=lambda r: not at_edge & set(r.set))
    if verdict in ("inconclusive", "good_fit"):  # the dev set is what limits the diagnosis: enlarge it first
        candidates += evidence
    if verdict == "high_bias_and_variance":
        bias_first = diag.gaps["avoidable_bias"].value >= diag.gaps["variance"].value
        pair = (bias, _variance(params, best, sizes, notes))
        candidates += [*pair[0], *pair[1]] if bias_first else [*pair[1], *pair[0]]
    elif verdict == "high_bias":
        candidates += bias
    elif verdict == "high_variance":
        candidates += _variance(params, best, sizes, notes)
    elif verdict == "data_mismatch":
        candidates += _mismatch(params, sizes, target, notes)
    elif verdict == "good_fit":
        candidates += _refine(best)
    if verdict not in ("inconclusive", "good_fit"):  # a significant problem: its remedies first, then more evidence
        candidates += evidence
    if flag is not None and verdict != flag.verdict:
        candidates += gradient_remedies(flag, params, best)
    dev = diag.errors.get("dev")
    if "dev_overfit" in diag.problems and dev is not None:
        tolerance, confidence = params.report.tolerance, params.report.confidence
        needed = examples_needed(dev.rate, tolerance, confidence)
        remedy, note = eval_split(params, sizes, dev, needed, tolerance, confidence, "dev_overfit")
        candidates.append(remedy)
        notes += [note] if note else []
    return _keep(params, candidates), notes


def _evidence(diag: Diagnosis, params: Params, sizes: Mapping[str, int], notes: list[str]) -> list[Remedy | None]:
    """A dev set large enough to settle the diagnosis (or the largest the data supports), then k-fold scoring of
    the trials when dev is too small to rank them; each with the interval it will give."""
    dev = diag.errors.get("dev")
    if dev is None:
        return []
    tolerance, confidence = params.report.tolerance, params.report.confidence
    too_small = dev.half_width > tolerance
    needed = [examples_needed(dev.rate, tolerance, confidence)] if too_small else []
    needed += [
        g.settle_n for g in diag.gaps.values() if g.status == "inconclusive" and g.settle_split == "dev" and g.settle_n
    ]
    if not needed:
        return []
    remedy, note = eval_split(params, sizes, dev, max(needed), tolerance, confidence, "dev_set")
    notes += [note] if note else []
    return [remedy, cv_folds(params, sizes, dev, confidence) if too_small else None]


def _mismatch(
    params: Params, sizes: Mapping[str, int], target: Mapping[str, Any] | None, notes: list[str]
) -> list[Remedy | None]:
    """The course's remedies for data mismatch; with a target source, part of it moved into training."""
    if target:
        notes += MISMATCH_NOTES
        return [target_train(params, target)]
    notes.append(
        "Data mismatch is fixed in the data: make the training data look like dev and test (source, resolution, "
        "preprocessing), or name the served distribution as `data.target` so part of it can go into training; "
        "no other params.yaml key does that."
    )
    return [train_dev(params, sizes, COMPARABLE, "data_mismatch", notes)]


def _keep(params: Params, candidates: Iterable[Remedy | None]) -> list[Remedy]:
    """Only keys that change, only changes that validate, each change once."""
    out: list[Remedy] = []
    for r in candidates:
        if r is None:
            continue
        changes = new_keys(params, r.set)
        if changes and is_valid(params, changes) and all(changes != o.set for o in out):
            out.append(Remedy(changes, r.addresses, r.why))
    return out


# --- the network and its training ----------------------------------------------------------------


def _bias(params: Params, best: Mapping[str, Any]) -> list[Remedy]:
    space, train = params.tune.space, params.train
    units, layers, l2, kp = space.n_units, space.n_layers, space.l2_lambda, space.keep_prob
    b_units, b_l2 = best.get("n_units", units.high), best.get("l2_lambda", l2.low)
    b_kp, b_lr = best.get("keep_prob", kp.high), best.get("learning_rate", train.learning_rate)
    epochs_key, epochs = (
        ("tune.space.epochs.high", space.epochs.high) if space.epochs else ("train.epochs", train.epochs)
    )
    a = "avoidable_bias"
    out = [
        Remedy(
            {"tune.space.n_units.high": 2 * units.high}, a, f"a bigger network: layers up to {2 * units.high} units"
        ),
        Remedy({"tune.space.n_layers.high": layers.high + 1}, a, f"a deeper network: up to {layers.high + 1} layers"),
        Remedy({epochs_key: 2 * epochs}, a, f"train longer: {2 * epochs} epochs instead of {epochs}"),
        Remedy(_lr_range(b_lr), a, f"a learning-rate range around the best ({b_lr:.3g}): a poor step also underfits"),
        Remedy({"tune.space.l2_lambda.high": _lower_cap(b_l2, l2.low, l2.high)}, a, "less L2: a lower cap on lambda"),
        Remedy({"tune.space.keep_prob.low": _raise_floor(b_kp, kp.low, kp.high)}, a, "less dropout: a higher floor"),
    ]
    if b_units > units.low:
        out.append(Remedy({"tune.space.n_units.low": b_units}, a, "drop the networks narrower than the best one"))
    return out


def _variance(params: Params, best: Mapping[str, Any], sizes: Mapping[str, int], notes: list[str]) -> list[Remedy]:
    space, train = params.tune.space, params.train
    units, l2, kp = space.n_units, space.l2_lambda, space.keep_prob
    b_units, b_l2 = best.get("n_units", units.high), best.get("l2_lambda", l2.low)
    v = "variance"
    more_l2 = proposed(b_l2 if b_l2 > l2.low else l2.low * L2_FACTOR)
    smaller = b_units if b_units < units.high else max(units.low, units.high // 2)
    more_dropout = round(max(KEEP_PROB_FLOOR, kp.low - KEEP_PROB_STEP), 2)
    out: list[Remedy | None] = [
        Remedy({"tune.space.l2_lambda.low": more_l2}, v, f"more L2 regularization: lambda of at least {more_l2:.3g}"),
        Remedy({"tune.space.keep_prob.low": more_dropout}, v, f"more dropout: keep_prob down to {more_dropout:g}"),
        Remedy({"tune.space.n_units.high": smaller}, v, f"a smaller network: hidden layers of at most {smaller} units"),
    ]
    if l2.allow_off:
        out.append(Remedy({"tune.space.l2_lambda.allow_off": False}, v, "always regularize: drop the 'off' choice"))
    if train.patience == 0:
        out.append(Remedy({"train.patience": PATIENCE}, v, f"early stopping after {PATIENCE} epochs without progress"))
    if not sizes.get("train_dev"):
        out.append(train_dev(params, sizes, COMPARABLE, v, notes))
    notes.append(
        "More training data of the same kind is the first remedy for variance (the learning curve shows whether it "
        "helps); it is new data, not a params.yaml key."
    )
    return [r for r in out if r is not None]


def _refine(best: Mapping[str, Any]) -> list[Remedy]:
    """Narrower ranges around the best trial's values (none without a study: there is no best to refine)."""
    out = []
    if "learning_rate" in best:
        b_lr = best["learning_rate"]
        why = f"refine: narrow the learning-rate range around the best ({b_lr:.3g})"
        out.append(Remedy(_lr_range(b_lr), "dev_error", why))
    if "n_units" in best:
        b_units = int(best["n_units"])
        units = {"tune.space.n_units.low": max(1, b_units // 2), "tune.space.n_units.high": 2 * b_units}
        out.append(Remedy(units, "dev_error", f"refine: narrow the width range around the best ({b_units} units)"))
    return out


def _lr_range(best_lr: float) -> dict[str, float]:
    return {
        "tune.space.learning_rate.low": proposed(best_lr / RANGE_FACTOR),
        "tune.space.learning_rate.high": proposed(min(best_lr * RANGE_FACTOR, 1.0)),
    }


def _lower_cap(best_l2: float, low: float, high: float) -> float:
    """The new l2_lambda.high for less regularization: the best lambda, else a decade below the old cap."""
    return proposed(max(best_l2, low) if 0 < best_l2 < high else high / L2_FACTOR)


def _raise_floor(best_kp: float, low: float, high: float) -> float:
    """The new keep_prob.low for less dropout: the best keep_prob, else one step higher."""
    return round(best_kp if best_kp > low else min(low + KEEP_PROB_STEP, high), 2)


def describe(remedy: Remedy, params: Params) -> str:
    """``key old -> new`` for each key, as the report's table shows it."""
    raw = as_raw(params)
    return ", ".join(f"`{k}` {yaml_scalar(get_key(raw, k, None))} -> {yaml_scalar(v)}" for k, v in remedy.set.items())
