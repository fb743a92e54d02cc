"""Stop a study at its noise floor: when more trials would only chase the dev set's noise.

``tune.stop_at_noise_floor: {patience: K, factor: c}`` stops the study once the last K finished
(COMPLETE or PRUNED) trials, in the order they finished, improved the best dev error by less
than c standard errors of that error. The standard error is that of a proportion,
``sqrt(p (1 - p) / n_dev)``, with p the best trial's ``dev_error`` user attribute and ``n_dev``
the dev examples: on 500 dev images and p = 0.05 it is 0.0097, so with c = 1 a run of K trials
that gains less than one point in a hundred stops. At p = 0 the standard error is 0 and no trial
can do better: K trials without any gain stop it.

Optuna's terminator module is deprecated; this rule is ours, and the workers check it between
trials (``worker.run_worker``), the launcher before opening a sweep (``launch.open_sweep``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def standard_error(p: float, n: int) -> float:
    """The standard error of an error rate ``p`` measured on ``n`` examples."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else math.inf


def noise_floor_stop(trials: Sequence[FrozenTrial], n_dev: int, patience: int, factor: float) -> str | None:
    """The stop cause if the last ``patience`` finished trials gained less than ``factor`` standard
    errors on the best dev error before them; None while the study still improves (or has too few
    trials to tell: it needs a COMPLETE trial before the last ``patience``)."""
    finished = sorted(
        (t for t in trials if t.state in FINISHED),
        key=lambda t: (t.datetime_complete or datetime.max, t.number),
    )
    if len(finished) <= patience:
        return None
    before = [t.value for t in finished[:-patience] if t.state == TrialState.COMPLETE and t.value is not None]
    complete = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    if not before:
        return None
    best = min(complete, key=lambda t: (t.value, t.number))
    gain = min(before) - best.value
    p = float(best.user_attrs.get("dev_error", best.value))
    se = standard_error(p, n_dev)
    threshold = factor * se
    if (gain < threshold) if threshold > 0 else (gain <= 0):
        return (
            f"noise floor: the last {patience} finished trials improved the best dev error by {gain:.4f}, "
            f"less than {factor:g} x its standard error {se:.4f} (best {p:.4f} on {n_dev} dev examples)"
        )
    return None
