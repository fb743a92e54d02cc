"""float32 against float64: the pipeline's stages on the default data, in each dtype, side by side.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_dtype.py [--dev 0.2] [--trials 20]

For each ``model.dtype`` the stages prepare, split, tune, train and evaluate run in a scratch copy
of the repository (its tracked files; MLflow into a sqlite store inside it), with params.yaml as
committed except the dtype, the split (``--dev`` of the digits for dev and as much for test, so the
errors have intervals that mean something: the default 1% gives 18 dev images) and ``tune.n_trials``.
Trials are seeded, so both dtypes try the same configurations. Prints per stage seconds, the
study's mean and best dev error over its finished trials, and the final model's train, dev and test
error with 95% Wilson intervals, as Markdown.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_report import STAGES, edit_params, run_stages  # noqa: E402

from pipeline.report.stats import wilson_interval  # noqa: E402
from tests.checkout import copy_checkout  # noqa: E402


def one(dtype: str, dev: float, trials: int) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"bench-dtype-{dtype}-") as tmp:
        repo = Path(tmp)
        copy_checkout(repo, commit=False)
        edit_params(
            repo / "params.yaml",
            model={"dtype": dtype},
            split={"train": round(1 - 2 * dev, 6), "dev": dev, "test": dev},
            tune={"n_trials": trials},
        )
        print(f"{dtype}: stages ...", file=sys.stderr, flush=True)
        seconds = run_stages(repo)
        metrics = json.loads((repo / "reports/metrics.json").read_text())
        with open(repo / "reports/study/trials.csv", newline="") as f:
            scores = [float(r["value"]) for r in csv.DictReader(f) if r["state"] == "COMPLETE" and r["value"]]
    return {"seconds": seconds, "metrics": metrics, "scores": scores}


def interval(metrics: dict, split: str) -> str:
    n = metrics[f"n_{split}"]
    rate = metrics[f"{split}_error"]
    low, high = wilson_interval(round(rate * n), n)
    return f"{rate:.2%} [{low:.2%}, {high:.2%}] of {n}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=float, default=0.2, help="fraction of the data for dev, and for test")
    parser.add_argument("--trials", type=int, default=20, help="tune.n_trials (params.yaml's default: 20)")
    args = parser.parse_args()
    start = time.perf_counter()
    results = {dtype: one(dtype, args.dev, args.trials) for dtype in ("float64", "float32")}
    print(f"# bench_dtype: digits, split dev {args.dev:g} / test {args.dev:g}, {args.trials} trials\n")
    print("| | float64 | float32 | float32 / float64 |")
    print("| --- | --- | --- | --- |")
    a, b = results["float64"], results["float32"]
    for stage in STAGES:
        x, y = a["seconds"][stage], b["seconds"][stage]
        print(f"| {stage} s | {x:.1f} | {y:.1f} | {y / x:.2f}x |")
    for name, pick in (("study mean dev error", lambda s: sum(s) / len(s)), ("study best dev error", min)):
        print(f"| {name} | {pick(a['scores']):.2%} | {pick(b['scores']):.2%} | |")
    for split in ("train", "dev", "test"):
        print(f"| final {split} error | {interval(a['metrics'], split)} | {interval(b['metrics'], split)} | |")
    print(f"\nTotal {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
