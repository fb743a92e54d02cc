"""What honest study results cost: per-example dev predictions per trial, and the stability check.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_report.py                     # default data
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_report.py --synthetic 300000  # 300,000 x 784

Both parts run in a scratch copy of the repository (its tracked files), so the workspace's own
outputs are never touched. The stages run as ``dvc repro`` runs them (``python -m pipeline
<stage>``), with MLflow tracking into a sqlite store inside the scratch copy.

1. Predictions (default data only): the tune stage's ``Objective`` trains the same seeded trials
   (RandomSampler, no pruner; one untimed warm-up trial each) twice, once as the pipeline runs it and once with
   ``_keep_predictions`` (encoding the predicted class of every dev example and writing it as a
   trial attribute) made a no-op. The two are interleaved, alternating which goes first, so drift
   in the machine's load hits both alike; the seconds spent inside ``_keep_predictions`` itself are
   measured too (the steadiest number on a shared machine). Goal: at most 5% of a trial's wall time.
2. The report stage (``pipeline.stages.report.write_report``) on the study the stages produced,
   with ``report.stability_seeds`` as in params.yaml (3 seeds of the top 3 configurations) and with
   0 (no stability check), each ``--repeats`` times, alternating; the fastest of each counts.
   Goal on the default data: with stability at most 2x without. ``--synthetic M`` runs the stages on
   the synthetic source at M examples of 28x28 (10 classes; 3 trials of 3 epochs, as a scale run
   would) and reports the same two timings there.

Progress goes to stderr, the Markdown report to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: one BLAS thread is fastest here

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
import yaml  # noqa: E402

from pipeline.config import load_params  # noqa: E402
from pipeline.study.objective import Objective, TrialData  # noqa: E402
from tests.checkout import copy_checkout  # noqa: E402

STAGES = ("prepare", "split", "tune", "train", "evaluate")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def edit_params(path: Path, **sections: dict[str, Any]) -> None:
    raw = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def run_stages(repo: Path) -> dict[str, float]:
    """Run the stages up to evaluate in ``repo``; wall seconds per stage."""
    env = {**os.environ, "PYTHONPATH": str(repo), "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}
    seconds = {}
    for stage in STAGES:
        log(f"  stage {stage} ...")
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pipeline", stage], cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL
        )
        seconds[stage] = time.perf_counter() - start
    return seconds


@contextlib.contextmanager
def inside(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class PlainObjective(Objective):
    """The pipeline's objective without the per-example predictions."""

    def _keep_predictions(self, trial: optuna.Trial, outcome: Any) -> None:
        return None


class TimedObjective(Objective):
    """The pipeline's objective, adding up the seconds spent keeping the predictions."""

    spent = 0.0

    def _keep_predictions(self, trial: optuna.Trial, outcome: Any) -> None:
        start = time.perf_counter()
        super()._keep_predictions(trial, outcome)
        TimedObjective.spent += time.perf_counter() - start


def bench_predictions(repo: Path, n_trials: int) -> None:
    with inside(repo):
        params = load_params("params.yaml")
        params = replace(params, tune=replace(params.tune, pruner="none"))
        data = TrialData.read()
        log(f"predictions: {n_trials} trials, each trained with and without them ...")
        storage = f"sqlite:///{repo / 'bench-predictions.db'}"
        studies = {
            name: optuna.create_study(
                storage=storage,
                study_name=name,
                sampler=optuna.samplers.RandomSampler(seed=0),
                pruner=optuna.pruners.NopPruner(),  # a pruned trial keeps no predictions
            )
            for name in ("with", "without")
        }
        objectives = {"with": TimedObjective(params, data), "without": PlainObjective(params, data)}
        for name in ("with", "without"):  # untimed: the first trial of a process pays lazy imports and caches
            studies[name].optimize(objectives[name], n_trials=1)
        TimedObjective.spent = 0.0
        walls: dict[str, list[float]] = {"with": [], "without": []}
        for i in range(n_trials):
            for name in ("with", "without") if i % 2 == 0 else ("without", "with"):
                start = time.perf_counter()
                studies[name].optimize(objectives[name], n_trials=1)
                walls[name].append(time.perf_counter() - start)
        wall = {name: sum(seconds) for name, seconds in walls.items()}
        per_trial = statistics.median(a / b for a, b in zip(walls["with"], walls["without"], strict=True))
        a, b = (s.trials[1:] for s in (studies["with"], studies["without"]))
        same = [t.value for t in a] == [t.value for t in b]
        kept = sum("dev_pred" in t.user_attrs for t in a)
    print(f"## Per-example dev predictions ({n_trials} trials, default data, {data.X_dev.shape[1]} dev examples)\n")
    print("| | wall s per trial | of which keeping the predictions |")
    print("| --- | --- | --- |")
    print(f"| with predictions | {wall['with'] / n_trials:.3f} | {TimedObjective.spent / n_trials * 1000:.2f} ms |")
    print(f"| without | {wall['without'] / n_trials:.3f} | - |")
    ratio = wall["with"] / wall["without"]
    share = TimedObjective.spent / wall["with"]
    print(
        f"\nWall ratio with/without: {ratio:.3f}x in all, {per_trial:.3f}x per trial (median); "
        f"time inside the predictions step: {share:.2%} of a trial "
        f"(goal <= 5%: {'met' if share <= 0.05 else 'NOT met'}). Same dev errors both ways: {same}; "
        f"trials that kept their predictions: {kept}/{n_trials}.\n"
    )


def bench_report(repo: Path, repeats: int, label: str) -> None:
    from pipeline.stages.report import write_report

    with inside(repo):
        params = load_params("params.yaml")
        off = replace(params, report=replace(params.report, stability_seeds=0))
        best = {"on": float("inf"), "off": float("inf")}
        for i in range(repeats):
            for name in ("on", "off") if i % 2 == 0 else ("off", "on"):
                log(f"  report, stability {name} ({i + 1}/{repeats}) ...")
                start = time.perf_counter()
                write_report(params if name == "on" else off, repo)
                best[name] = min(best[name], time.perf_counter() - start)
    seeds, top_k = params.report.stability_seeds, params.report.stability_top_k
    print(f"## Report stage, {label} (fastest of {repeats})\n")
    print("| stability check | report s |")
    print("| --- | --- |")
    print(f"| on ({top_k} configurations x {seeds} seeds) | {best['on']:.1f} |")
    print(f"| off (`report.stability_seeds: 0`) | {best['off']:.1f} |")
    ratio = best["on"] / best["off"]
    print(f"\nRatio on/off: {ratio:.2f}x (goal on the default data <= 2x: {'met' if ratio <= 2 else 'NOT met'})\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of the predictions comparison")
    parser.add_argument("--repeats", type=int, default=3, help="report stage runs with and without stability")
    parser.add_argument("--synthetic", type=int, metavar="M", help="the synthetic source at M examples of 28x28")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        repo = Path(tmp)
        copy_checkout(repo, commit=False)
        if args.synthetic:
            edit_params(
                repo / "params.yaml",
                data={
                    "source": "synthetic",
                    "synthetic": {"m": args.synthetic, "height": 28, "width": 28, "channels": 1, "n_classes": 10},
                },
                tune={"n_trials": 3, "pruner": "none"},
                train={"epochs": 3},
            )
            label = f"synthetic {args.synthetic:,} x 784"
        else:
            label = "default data"
        log(f"stages on the {label} in {repo} ...")
        seconds = run_stages(repo)
        print(f"# bench_report: {label}\n")
        print("Stages before the report: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + "\n")
        if not args.synthetic:
            bench_predictions(repo, args.trials)
        bench_report(repo, 1 if args.synthetic else args.repeats, label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
