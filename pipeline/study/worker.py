"""A sweep's worker process: ``python -m pipeline.study.worker --index I '<config JSON>'``.

The launcher (``pipeline sweep`` / ``pipeline tune`` with several workers) starts these after it
created the study; this module is a command-line edge, so it prints one line per trial.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

import optuna
from optuna.trial import FrozenTrial

from pipeline.errors import PipelineError
from pipeline.study.runner import SweepConfig, progress_line, run_worker


class TrialPrinter:
    """Optuna callback printing ``progress_line`` for each finished trial (CLI edges only)."""

    def __init__(self, cfg: SweepConfig, prefix: str = "") -> None:
        self.cfg, self.prefix = cfg, prefix

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        print(f"{self.prefix}{progress_line(study, trial, self.cfg)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline.study.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=int, default=0, help="worker number (seeds its own sampler stream)")
    parser.add_argument("config", help="SweepConfig as JSON, written by the launcher")
    args = parser.parse_args(argv)
    cfg = SweepConfig(**json.loads(args.config))
    # SIGTERM (a scheduler's stop) ends the running trial like Ctrl-C: marked, run KILLED.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our trial lines replace Optuna's (and Ctrl-C tracebacks)
    try:
        run_worker(cfg, args.index, [TrialPrinter(cfg, f"w{args.index} ")])
    except KeyboardInterrupt:
        return 130
    except PipelineError as e:
        print(f"error: worker {args.index}: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
