"""Tracking overhead: the same trials trained with and without an MLflow child run.

Each trial (parameters drawn by a seeded Optuna RandomSampler, trained on the embedded digits with
the trial's own seed) is trained twice, once plain and once inside ``pipeline.tracking.TrialRun``
(params, tags, per-epoch metrics buffered and written with ``log_batch``, final metrics, end).
The two are interleaved, alternating which goes first, and each is run ``--repeats`` times (the
fastest counts), so drift in the machine's load hits both alike. The time spent inside the
tracking calls themselves is measured too: on a shared machine it is the steadiest number.
Both runs of a trial compute the same thing: the script checks that their final costs are equal.

The one-off costs of a sweep are reported apart from the per-trial overhead: creating the sqlite
store (migrations), the parent run (``prepare_study_run``) and the study summary
(``finish_study_run``).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_tracking.py              # 10 trials x 100 epochs
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_tracking.py --trials 2 --epochs 5   # smoke test

Progress goes to stderr, the markdown report to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one BLAS thread is fastest here

import numpy as np
import optuna
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline.data.normalize import Normalizer
from pipeline.nn import Architecture, FitOptions, error_rate, fit


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits split 90/10 into train and dev, standardized with train statistics; examples as columns."""
    raw, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    raw, y = raw[order], y[order]
    n_train = int(0.9 * len(y))
    normalizer = Normalizer.fit(raw[:n_train], "standardize", 16.0)
    X = normalizer.transform(raw)
    return X[:n_train].T, y[:n_train], X[n_train:].T, y[n_train:]


class Clock:
    """Wall and CPU seconds of a block, plus the wall seconds spent inside tracking calls."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.tracking = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu

    def timed(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            self.tracking += time.perf_counter() - t


@dataclass(frozen=True)
class Job:
    """One trial's training, run plain or inside a TrialRun; returns the last epoch's dev cost."""

    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    arch: Architecture
    hp: FitOptions
    seed: list[int]

    def plain(self, clock: Clock) -> float:
        X, y, X_dev, y_dev = self.data
        result = fit(X, y, self.arch, self.hp, X_dev=X_dev, y_dev=y_dev, seed=self.seed)
        return result.history[-1].dev_cost

    def tracked(self, clock: Clock, tracking: Any, parent: str, trial: optuna.Trial, values: dict[str, Any]) -> float:
        X, y, X_dev, y_dev = self.data
        run = clock.timed(tracking.TrialRun, parent, "bench", trial.number, values, {"data.hash": "digits"})
        trial.set_user_attr("mlflow_run_id", run.run_id)
        with run:
            callback = partial(clock.timed, run.on_epoch)
            result = fit(X, y, self.arch, self.hp, X_dev=X_dev, y_dev=y_dev, seed=self.seed, callbacks=[callback])
            final = {
                "final_train_error": error_rate(X, y, result.weights, self.arch),
                "final_dev_error": error_rate(X_dev, y_dev, result.weights, self.arch),
            }
            clock.timed(run.end, "FINISHED", metrics=final)
        return result.history[-1].dev_cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant per trial; the fastest counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory() as home:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/mlflow.db"
        t = time.perf_counter()
        from pipeline import tracking  # imports mlflow

        t_import = time.perf_counter() - t
        t = time.perf_counter()
        tracking.MlflowClient(tracking.tracking_uri()).search_experiments()  # creates the store
        t_store = time.perf_counter() - t
        t = time.perf_counter()
        parent = tracking.prepare_study_run("bench", None, {"data.hash": "digits"})
        t_prepare = time.perf_counter() - t

        data = digits(args.seed)
        study = optuna.create_study(study_name="bench", sampler=optuna.samplers.RandomSampler(seed=args.seed))
        best: dict[str, list[Clock]] = {"plain": [], "tracked": []}
        for i in range(args.trials):
            trial = study.ask()
            values = {
                "learning_rate": trial.suggest_float("learning_rate", 1e-3, 1e-2, log=True),
                "n_layers": trial.suggest_int("n_layers", 1, 3),
                "n_units": trial.suggest_int("n_units", 16, 128),
            }
            arch = Architecture.build(data[0].shape[0], 10, (values["n_units"],) * values["n_layers"])
            hp = FitOptions(learning_rate=values["learning_rate"], epochs=args.epochs, batch_size=64)
            job = Job(data, arch, hp, seed=[args.seed, trial.number])
            variants = {
                "plain": job.plain,
                "tracked": partial(job.tracked, tracking=tracking, parent=parent, trial=trial, values=values),
            }
            clocks: dict[str, list[Clock]] = {"plain": [], "tracked": []}
            costs = set()
            for r in range(args.repeats):
                for name in ("plain", "tracked")[:: 1 if (i + r) % 2 == 0 else -1]:  # alternate who goes first
                    with Clock() as clock:
                        costs.add(variants[name](clock))
                    clocks[name].append(clock)
            if len(costs) != 1:
                raise SystemExit(f"trial {i}: tracked and plain training differ ({costs}); the comparison is void")
            study.tell(trial, costs.pop())
            for name in best:
                best[name].append(min(clocks[name], key=lambda c: c.wall))
            p, tr = best["plain"][-1], best["tracked"][-1]
            log(f"trial {i}: {values} plain {p.wall:.3f} s, tracked {tr.wall:.3f} s (calls {tr.tracking:.3f} s)")

        t = time.perf_counter()
        tracking.finish_study_run(parent, study)
        t_finish = time.perf_counter() - t
        last_run = study.trials[-1].user_attrs["mlflow_run_id"]
        n_points = len(tracking.MlflowClient(tracking.tracking_uri()).get_metric_history(last_run, "train_cost"))

    def total(name: str, field: str) -> float:
        return sum(getattr(c, field) for c in best[name])

    plain_wall, tracked_wall = total("plain", "wall"), total("tracked", "wall")
    plain_cpu, tracked_cpu = total("plain", "cpu"), total("tracked", "cpu")
    inside = total("tracked", "tracking")
    sweep = tracked_wall + t_prepare + t_finish

    def pct(extra: float, base: float) -> str:
        return f"{100 * extra / base:+.1f} %"

    print(f"## Tracking overhead: {args.trials} trials x {args.epochs} epochs on digits (seed {args.seed})\n")
    print(f"Fastest of {args.repeats} runs per trial and variant, summed over the trials.\n")
    print("| measure | seconds | vs trials without MLflow |\n| --- | ---: | ---: |")
    print(f"| trials without MLflow, wall | {plain_wall:.2f} | |")
    tracked_pct = pct(tracked_wall - plain_wall, plain_wall)
    print(f"| same trials with MLflow child runs, wall | {tracked_wall:.2f} | {tracked_pct} |")
    print(f"| time inside tracking calls (TrialRun, on_epoch, end), wall | {inside:.3f} | {pct(inside, plain_wall)} |")
    print(f"| trials without MLflow, CPU | {plain_cpu:.2f} | |")
    print(
        f"| same trials with MLflow child runs, CPU | {tracked_cpu:.2f} | {pct(tracked_cpu - plain_cpu, plain_cpu)} |"
    )
    print(f"| tracking calls per trial, mean wall | {inside / args.trials:.3f} | |")
    print(f"| one-off: import mlflow | {t_import:.2f} | |")
    print(f"| one-off: create the sqlite store (migrations) | {t_store:.2f} | |")
    print(f"| one-off: parent run (prepare_study_run) | {t_prepare:.3f} | |")
    print(f"| one-off: study summary (finish_study_run) | {t_finish:.2f} | |")
    print(
        f"| whole sweep on an existing store: prepare + tracked trials + finish | {sweep:.2f} "
        f"| {pct(sweep - plain_wall, plain_wall)} |"
    )
    print(f"\nmetric history points of the last trial's train_cost: {n_points} (epochs: {args.epochs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
