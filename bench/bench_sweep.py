"""Sweep benchmarks: worker scaling on the default sqlite study, and what pruning saves.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_sweep.py [--trials 16] [--prune-trials 30]
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_sweep.py --only command --repeats 3
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_sweep.py --only command --default-study --repeats 3
    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_sweep.py --only prune-cost

1. Throughput: the same fixed-size trials (digits, 2x64 hidden units, no pruner) with 1 and then
   2 worker processes, 1 BLAS thread each. Trials per minute over the span from the first trial's
   start to the last trial's end, and over the whole ``python -m pipeline sweep`` command as a
   person runs it (process start, imports, study creation, workers' start-up included), with
   MLflow tracking on as in the default study. Goal: 2 workers >= 1.8x one worker, start-up
   included. With ``--default-study`` the command section runs params.yaml's own study instead
   (its space, epochs, batch size, pruner and n_trials as committed), the one issue #14's goal names.
   The section ends with the bound the libraries alone set: their floor of any tracked sweep's set-up
   (numpy, optuna and mlflow imported, both stores opened, no pipeline code) serial and all else
   exactly halved.
2. Fixed costs: a worker process's start and imports; per trial, the study's round trips (ask,
   attributes, per-epoch reports, tell) and MLflow's (the child run, its params, curves, end),
   read as the intercept of trial seconds against epochs (trials of 1 and of 11 epochs).
3. Pruning: the same seeded study with the median pruner and with none. Goal: the pruned study
   trains >= 40% fewer epochs, and its best dev error lies inside the 95% Wilson interval of the
   unpruned study's best.
4. Pruning's round trips (``--only prune-cost``): the default study (params.yaml's space, epochs
   and median pruner, ``--trials`` + 4 trials, 1 worker, tracking off) with Optuna's
   ``MedianPruner`` and with ``pipeline.study.pruning.MedianPruner``, which reads the finished
   trials once a second. Goal: the same trials pruned at the same epochs, in fewer trial seconds.

The dev split here is 30% of digits (540 images), not the pipeline's 1%, so the interval means
something. The in-process runs of 1, 3 and 4 have MLflow tracking off (the study engine alone).
Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import yaml  # noqa: E402

from pipeline.config import load_params  # noqa: E402
from pipeline.data.sources import digits_arrays  # noqa: E402
from pipeline.paths import SPLIT_DIR  # noqa: E402
from pipeline.study import launch  # noqa: E402
from pipeline.study.config import config_from_params  # noqa: E402


def write_split(folder: Path, seed: int = 0, dev_fraction: float = 0.3) -> int:
    """Digits, standardized with train statistics; returns the dev size."""
    X, y = digits_arrays()
    order = np.random.default_rng(seed).permutation(len(y))
    n_dev = int(len(y) * dev_fraction)
    dev, train = order[:n_dev], order[n_dev:]
    mean, std = X[train].mean(0), X[train].std(0) + 1e-8
    folder.mkdir(parents=True, exist_ok=True)
    for part, idx in (("train", train), ("dev", dev)):
        np.save(folder / f"X_{part}.npy", ((X[idx] - mean) / std).astype(np.float32))
        np.save(folder / f"y_{part}.npy", y[idx].astype(np.int64))
    normalizer = {"mode": "none", "pixel_range": 1.0, "classes": [str(c) for c in range(10)]}
    (folder / "normalizer.json").write_text(json.dumps(normalizer))  # the trials' class count
    return n_dev


def write_params(path: Path, *, epochs: int, fixed_size: bool, startup: int = 5) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(epochs=epochs, batch_size=64)
    params["tune"].update(startup_trials=startup)
    if fixed_size:  # every trial does the same work, so trials/min compares like with like
        params["tune"]["space"].update(n_layers={"low": 2, "high": 2}, n_units={"low": 64, "high": 64})
    path.write_text(yaml.safe_dump(params))


def run_study(work: Path, name: str, *, n_trials: int, n_workers: int, pruner: str) -> tuple[optuna.Study, float]:
    """A sweep through the real launcher (processes for >1 worker); returns the study and wall seconds."""
    cfg = config_from_params(
        load_params(work / "params.yaml"),
        study_name=name,
        n_trials=n_trials,
        n_workers=n_workers,
        pruner=pruner,
        threads=1,
        root=work,
        storage=f"sqlite:///{work / 'studies' / 'optuna.db'}",
        tracking=False,
    )
    study, state = launch.open_sweep(cfg, resume=False)
    start = time.perf_counter()
    launch.run_sweep(cfg, state)
    return study, time.perf_counter() - start


class Command(NamedTuple):
    wall: float  # seconds of the whole command
    setup: float  # from the command's start to its first trial's start
    tail: float  # from its last trial's end to the command's exit
    study: optuna.Study


def command_wall(
    work: Path, name: str, *, n_trials: int, n_workers: int, params: str = "params.yaml", pruner: str | None = "none"
) -> Command:
    """The whole ``pipeline sweep`` command (what a person waits for), MLflow on; ``pruner`` None: the params'."""
    command = [sys.executable, "-m", "pipeline", "sweep", "--params", str(work / params), "--root", str(work)]
    command += ["--study-name", name, "--n-trials", str(n_trials), "--workers", str(n_workers)]
    command += ["--pruner", pruner] if pruner else []
    command += ["--threads", "1"]
    began = datetime.now()  # the clock of Optuna's trial datetimes
    start = time.perf_counter()
    subprocess.run(command, cwd=work, check=True, capture_output=True)
    wall = time.perf_counter() - start
    storage = optuna.storages.RDBStorage(f"sqlite:///{work / 'studies' / 'optuna.db'}")
    names = [s.study_name for s in storage.get_all_studies() if s.user_attrs.get("base_name") == name]
    study = optuna.load_study(study_name=names[-1], storage=storage)
    trials = study.get_trials(states=launch.COUNTED)
    setup = (min(t.datetime_start for t in trials) - began).total_seconds()
    tail = wall - setup - span_minutes(study) * 60
    return Command(wall, setup, tail, study)


def worker_start_seconds(tracking: bool, repeats: int = 3) -> float:
    """A fresh interpreter importing what a worker process imports (median wall of ``repeats``)."""
    modules = "import pipeline.study.worker, pipeline.study.objective" + (", pipeline.tracking" if tracking else "")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", modules], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


LIBRARY_STEPS = (  # what a tracked sweep cannot skip, in order (library_setup times each)
    "interpreter start",
    "numpy, optuna and mlflow imported",
    "study storage opened",
    "MLflow store opened",
)


def library_setup(work: Path, repeats: int = 3) -> dict[str, float]:
    """The libraries' share of a tracked sweep's set-up, no pipeline code: a fresh interpreter
    importing numpy, optuna and mlflow and opening the study storage and the MLflow store on
    ``work``'s files, both already created. Seconds of each of ``LIBRARY_STEPS`` and of the
    interpreter's exit (median of ``repeats``). No tracked sweep's set-up can be shorter than the
    steps' sum. The exit is shown but left out of it: a sweep's whole tail, from its last trial's
    end to its exit, is the table's tail column (0.1-0.3 s)."""
    code = (
        "import sys, time\n"
        "stamps = [time.time()]\n"
        "import numpy, optuna, mlflow\n"
        "stamps.append(time.time())\n"
        "optuna.storages.RDBStorage(sys.argv[1]).get_all_studies()\n"
        "stamps.append(time.time())\n"
        "mlflow.MlflowClient(sys.argv[2]).search_experiments()\n"
        "stamps.append(time.time())\n"
        "print(*stamps)\n"
    )
    study, store = f"sqlite:///{work / 'studies' / 'optuna.db'}", f"sqlite:///{work / 'mlflow.db'}"
    steps: dict[str, list[float]] = {name: [] for name in (*LIBRARY_STEPS, "exit")}
    for _ in range(repeats):
        start = time.time()  # the clock the child stamps with: wall time, shared by both processes
        done = subprocess.run([sys.executable, "-c", code, study, store], check=True, capture_output=True, text=True)
        end = time.time()
        stamps = [start, *map(float, done.stdout.split())]
        for name, before, after in zip(LIBRARY_STEPS, stamps[:-1], stamps[1:], strict=True):
            steps[name].append(after - before)
        steps["exit"].append(end - stamps[-1])
    return {name: statistics.median(times) for name, times in steps.items()}


def trial_intercept(work: Path, tag: str, *, tracking: bool, n_trials: int = 6) -> tuple[float, float]:
    """(seconds per trial not spent in epochs, seconds per epoch): trials of 1 and 11 epochs, in process."""
    means = {}
    for epochs in (1, 11):
        write_params(work / "params.yaml", epochs=epochs, fixed_size=True)
        cfg = config_from_params(
            load_params(work / "params.yaml"),
            study_name=f"fixed-{tag}-{epochs}",
            n_trials=n_trials,
            n_workers=1,
            pruner="none",
            threads=1,
            root=work,
            storage=f"sqlite:///{work / 'studies' / 'optuna.db'}",
            tracking=tracking,
        )
        study, state = launch.open_sweep(cfg, resume=False)
        launch.run_sweep(cfg, state)
        launch.finish(study, cfg, state)
        trials = study.get_trials(states=launch.COUNTED)[1:]  # the first pays one-off imports
        means[epochs] = statistics.median(t.duration.total_seconds() for t in trials)
    per_epoch = (means[11] - means[1]) / 10
    return means[1] - per_epoch, per_epoch


def span_minutes(study: optuna.Study) -> float:
    trials = study.get_trials(states=launch.COUNTED)
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    return (end - start).total_seconds() / 60


SECTIONS = ("throughput", "command", "costs", "pruning", "prune-cost", "storage")


def wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return center - half, center + half


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="trials per throughput run")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per throughput trial (~1.3 s)")
    parser.add_argument("--prune-trials", type=int, default=30, help="trials per pruning run")
    parser.add_argument("--prune-epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=1, help="runs of the whole command per worker count")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="sections to run (default: all)")
    parser.add_argument(
        "--default-study",
        action="store_true",
        help="command section: params.yaml's own study (space, epochs, pruner, n_trials), not fixed-size trials",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        work = Path(tmp)
        n_dev = write_split(work / SPLIT_DIR)
        os.environ["PIPELINE_HOME"] = str(work)

        sections = set(args.only or SECTIONS)
        write_params(work / "params.yaml", epochs=args.epochs, fixed_size=True)
        if "throughput" in sections:
            throughput(work, args)
        if "command" in sections:
            ok &= whole_command(work, args)
        if "costs" in sections:
            fixed_costs(work)
        if "pruning" in sections:
            ok &= pruning(work, args, n_dev)
        if "prune-cost" in sections:
            ok &= prune_cost(work, args)
        if "storage" in sections:
            storage_contention(work)
    return 0 if ok else 1


def throughput(work: Path, args: argparse.Namespace) -> None:
    """In process, tracking off: the study engine alone, over the trial span and the launcher's wall."""
    print(f"## Throughput ({args.trials} trials, {args.epochs} epochs, 2x64 units, 1 BLAS thread per worker)\n")
    print("| workers | wall s (incl. start-up) | trial span s | s per trial | trials/min | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = None
    for n_workers in (1, 2):
        name = f"throughput-{n_workers}"
        study, wall = run_study(work, name, n_trials=args.trials, n_workers=n_workers, pruner="none")
        rate = args.trials / span_minutes(study)
        per_trial = np.mean([t.duration.total_seconds() for t in study.get_trials(states=launch.COUNTED)])
        base = base or rate
        span = span_minutes(study) * 60
        print(f"| {n_workers} | {wall:.1f} | {span:.1f} | {per_trial:.2f} | {rate:.1f} | {rate / base:.2f}x |")
    print(f"\nIn process, tracking off, over the trial span: 2 workers {rate / base:.2f}x one worker\n")


def whole_command(work: Path, args: argparse.Namespace) -> bool:
    """The whole ``pipeline sweep`` command, MLflow on, ``--repeats`` times (1, 2, then 2, 1 workers); the goal."""
    if args.default_study:  # params.yaml's study as dvc repro runs it, on the bench's split
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        (work / "params-default.yaml").write_text(yaml.safe_dump(params))
        n_trials, file, pruner = params["tune"]["n_trials"], "params-default.yaml", None
        epochs, rule = params["train"]["epochs"], params["tune"]["pruner"]
        what = f"the default study: {n_trials} trials of up to {epochs} epochs, {rule} pruner"
    else:
        n_trials, file, pruner, what = args.trials, "params.yaml", "none", f"{args.trials} trials"
    print(f"## The whole `pipeline sweep` command, MLflow tracking on ({what})\n")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    from pipeline import tracking

    tracking.MlflowClient(tracking.tracking_uri()).search_experiments()  # migrate before timing
    print(
        "| repeat | workers | command wall s | set-up s (start to first trial) | trial span s "
        "| tail s (last trial to exit) | s per trial | trials/min (wall) | speed-up (wall) | speed-up (span) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    speedups, bounds, span_speedups, one_walls = [], [], [], []
    for repeat in range(1, args.repeats + 1):
        runs = {}
        # 1, 2 then 2, 1 (ABBA): a machine that drifts faster or slower over the run favours neither
        for n_workers in (1, 2) if repeat % 2 else (2, 1):
            runs[n_workers] = command_wall(
                work,
                f"command-{repeat}-{n_workers}",
                n_trials=n_trials,
                n_workers=n_workers,
                params=file,
                pruner=pruner,
            )
        spans = {n: span_minutes(run.study) * 60 for n, run in runs.items()}
        for n_workers, run in sorted(runs.items()):
            per_trial = np.mean([t.duration.total_seconds() for t in run.study.get_trials(states=launch.COUNTED)])
            print(
                f"| {repeat} | {n_workers} | {run.wall:.1f} | {run.setup:.1f} | {spans[n_workers]:.1f} "
                f"| {run.tail:.1f} | {per_trial:.2f} | {n_trials / run.wall * 60:.1f} | {runs[1].wall / run.wall:.2f}x "
                f"| {spans[1] / spans[n_workers]:.2f}x |"
            )
        speedups.append(runs[1].wall / runs[2].wall)
        one_walls.append(runs[1].wall)
        span_speedups.append(spans[1] / spans[2])
        fixed = runs[1].setup + runs[1].tail
        bounds.append(runs[1].wall / (fixed + (runs[1].wall - fixed) / 2))
    speedup, bound = statistics.median(speedups), statistics.median(bounds)
    library = library_setup(work)
    floor = sum(library[name] for name in LIBRARY_STEPS)
    walls = statistics.median(one_walls)
    floor_bound = 2 * walls / (walls + floor)  # the floor serial, everything else halved
    met = speedup >= 1.8
    print(f"\nGoal 2 workers >= 1.8x, start-up included: {'met' if met else 'NOT met'} ({speedup:.2f}x", end="")
    print(f", the median of {args.repeats} repeats)\n" if args.repeats > 1 else ")\n")
    print(
        "Bound: with one worker's set-up and tail, and trials exactly twice as fast, two workers would "
        f"reach {bound:.2f}x on 2 cores. Over the trial span alone (first trial's start to last trial's "
        f"end): {statistics.median(span_speedups):.2f}x.\n"
    )
    print(
        f"The libraries' floor of any tracked sweep's set-up (numpy, optuna and mlflow imported, both stores "
        f"opened, no pipeline code): {floor:.2f} s. With only that floor left serial and all else "
        f"exactly halved, two workers would reach {floor_bound:.2f}x (1.8x needs a floor of at most "
        f"{walls / 9:.2f} s of one worker's {walls:.1f} s).\n"
    )
    print("| the libraries' floor, step (median of 3) | seconds |\n| --- | --- |")
    for name in LIBRARY_STEPS:
        print(f"| {name} | {library[name]:.2f} |")
    print(f"| (the interpreter's exit, not in the floor) | {library['exit']:.2f} |\n")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return met


def fixed_costs(work: Path) -> None:
    print("## Fixed costs\n")
    bare, tracked = worker_start_seconds(False), worker_start_seconds(True)
    print("| cost | seconds |")
    print("| --- | --- |")
    print(f"| the workers' process start + imports, once per sweep (then forked), tracking off | {bare:.2f} |")
    print(f"| the same, tracking on (mlflow) | {tracked:.2f} |")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    study_cost, per_epoch = trial_intercept(work, "off", tracking=False)
    with_mlflow, _ = trial_intercept(work, "on", tracking=True)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    print(f"| per trial: the study's round trips and set-up (intercept, tracking off) | {study_cost:.3f} |")
    print(f"| per trial: MLflow's round trips (intercept on - off) | {with_mlflow - study_cost:.3f} |")
    print(f"| per epoch of training (slope, 2x64 units, batch 64) | {per_epoch:.4f} |")
    print()


def pruning(work: Path, args: argparse.Namespace, n_dev: int) -> bool:
    print(f"## Pruning ({args.prune_trials} trials, {args.prune_epochs} epochs, full search space, 1 worker)\n")
    write_params(work / "params.yaml", epochs=args.prune_epochs, fixed_size=False)
    results = {}
    for pruner in ("none", "median"):
        study, wall = run_study(work, f"prune-{pruner}", n_trials=args.prune_trials, n_workers=1, pruner=pruner)
        trials = study.get_trials(states=launch.COUNTED)
        epochs = sum(t.user_attrs["epochs_trained"] for t in trials)
        n_pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
        results[pruner] = (epochs, study.best_value, n_pruned, wall)
    print("| pruner | epochs trained | pruned trials | best dev error | wall s |")
    print("| --- | --- | --- | --- | --- |")
    for pruner, (epochs, best, n_pruned, wall) in results.items():
        print(f"| {pruner} | {epochs} | {n_pruned} | {best:.4f} | {wall:.1f} |")
    saved = 1 - results["median"][0] / results["none"][0]
    low, high = wilson(results["none"][1], n_dev)
    inside = low <= results["median"][1] <= high
    print(f"\nEpochs saved: {saved:.1%} (goal >= 40%: {'met' if saved >= 0.4 else 'NOT met'})")
    print(
        f"Unpruned best {results['none'][1]:.4f}, 95% Wilson interval on {n_dev} dev images "
        f"[{low:.4f}, {high:.4f}]; pruned best {results['median'][1]:.4f}: {'inside' if inside else 'OUTSIDE'}"
    )
    return saved >= 0.4 and inside


def prune_cost(work: Path, args: argparse.Namespace) -> bool:
    """The default study (params.yaml's space, epochs and median pruner) with Optuna's pruner and with ours.

    Same seed, one worker, tracking off, so both make the same trials; the seconds inside
    ``Trial.should_prune`` and ``Trial.report`` are timed around Optuna's own methods. Goal: the
    same trials pruned at the same epochs, and fewer seconds per trial.
    """
    from pipeline.study import config as study_config

    trials = args.trials + 4  # params.yaml's 20 at the default --trials
    print(f"## What pruning's round trips cost: the default study, {trials} trials, median pruner, 1 worker\n")
    (work / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    spent = {"should_prune": 0.0, "report": 0.0}
    originals = {name: getattr(optuna.trial.Trial, name) for name in spent}

    def timed(name: str):
        def method(self, *a, **k):
            start = time.perf_counter()
            try:
                return originals[name](self, *a, **k)
            finally:
                spent[name] += time.perf_counter() - start

        return method

    builders = {
        "optuna.pruners.MedianPruner": lambda p: optuna.pruners.MedianPruner(**study_config.median_settings(p)),
        "pipeline.study.pruning.MedianPruner": study_config.PRUNERS["median"],
    }
    print("| pruner | trial s (sum) | epochs | pruned | s in should_prune | s in report | ms per epoch (both) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    results = {}
    for label, build in builders.items():
        spent.update(should_prune=0.0, report=0.0)
        for name in spent:
            setattr(optuna.trial.Trial, name, timed(name))
        study_config.PRUNERS["median"] = build  # the dict the worker reads
        try:
            study, _ = run_study(work, f"prune-cost-{len(results)}", n_trials=trials, n_workers=1, pruner="median")
        finally:
            study_config.PRUNERS["median"] = builders["pipeline.study.pruning.MedianPruner"]
            for name, method in originals.items():
                setattr(optuna.trial.Trial, name, method)
        done = study.get_trials(states=launch.COUNTED)
        seconds = sum(t.duration.total_seconds() for t in done)
        epochs = sum(t.user_attrs["epochs_trained"] for t in done)
        pruned = tuple((t.number, t.user_attrs["epochs_trained"]) for t in done if t.state.name == "PRUNED")
        results[label] = (seconds, pruned)
        both = (spent["should_prune"] + spent["report"]) / epochs * 1e3
        print(
            f"| {label} | {seconds:.2f} | {epochs} | {len(pruned)} | {spent['should_prune']:.2f} "
            f"| {spent['report']:.2f} | {both:.2f} |"
        )
    (theirs, pruned_theirs), (ours, pruned_ours) = results.values()
    same = pruned_theirs == pruned_ours
    print(f"\nSame trials pruned at the same epochs: {'yes' if same else 'NO'}", end="")
    print(f"; trial seconds, ours / Optuna's: {ours / theirs:.2f}\n")
    write_params(work / "params.yaml", epochs=args.epochs, fixed_size=True)
    return same and ours < theirs


def report_epochs(url: str, steps: int = 100, repeats: int = 3, synced_at_ends: bool = False) -> list[float]:
    """Seconds of ``steps`` intermediate reports, each after ~1 ms of work, and the trial's end, as a trial
    makes them (one process). ``synced_at_ends``: through ``open_storage`` (commits in WAL mode skip their
    fsync) with ``sync_trial_end`` after the tell, as a sweep's worker does; else a plain RDBStorage."""
    from pipeline.study.storage import open_storage, sync_trial_end

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(url, check_schema=False) if synced_at_ends else optuna.storages.RDBStorage(url)
    study = optuna.load_study(study_name="reports", storage=storage)
    seconds = []
    for _ in range(repeats):
        trial = study.ask()
        start = time.perf_counter()
        for step in range(steps):
            trial.report(0.5, step)
            deadline = time.perf_counter() + 0.001
            while time.perf_counter() < deadline:  # a small network's epoch, on the CPU
                pass
        study.tell(trial, 0.0)
        if synced_at_ends:
            sync_trial_end(url)
        seconds.append(time.perf_counter() - start)
    return seconds


def storage_contention(work: Path) -> None:
    """Why a sweep puts its sqlite file in WAL mode (``storage.use_wal``) and syncs it at trial ends
    (``storage.sync_trial_end``): a trial's reports and end, alone and beside a second writer."""
    import multiprocessing
    import sqlite3

    print("## sqlite journal mode: a trial's 100 per-epoch reports and its end, alone and beside a second worker\n")
    print("| journal mode, syncs | alone s (median of 3) | beside another worker s | slow-down |")
    print("| --- | --- | --- | --- |")
    context = multiprocessing.get_context("spawn")
    rows = (
        ("delete", "every commit", report_epochs),
        ("wal", "every commit", report_epochs),
        ("wal", "at the trial's end (a sweep's worker)", functools.partial(report_epochs, synced_at_ends=True)),
    )
    for i, (mode, syncs, run) in enumerate(rows):
        path = work / f"reports-{i}.db"
        connection = sqlite3.connect(path)
        connection.execute(f"PRAGMA journal_mode={mode}")
        connection.close()
        url = f"sqlite:///{path}"
        optuna.create_study(study_name="reports", storage=url)
        with context.Pool(1) as pool:
            alone = statistics.median(pool.map(run, [url])[0])
        with context.Pool(2) as pool:
            beside = statistics.median([t for times in pool.map(run, [url, url]) for t in times])
        print(f"| {mode}, {syncs} | {alone:.3f} | {beside:.3f} | {beside / alone:.2f}x |")
    print()


if __name__ == "__main__":
    raise SystemExit(main())
