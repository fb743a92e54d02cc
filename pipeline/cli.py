"""Command line: ``python -m pipeline <command>``; every stage and tool is a subcommand.

Each command lives in its own module exposing ``configure(parser)`` and ``run(args) -> int``;
modules are imported only when their command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pipeline import __version__
from pipeline.console import first_paragraph, quiet_third_party
from pipeline.errors import DataError, NumericalError, PipelineError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": (
        "pipeline.stages.prepare",
        "load the configured source(s), flatten images to raw pixel rows",
    ),
    "split": ("pipeline.stages.split", "stratified train/dev/test split, normalized with train statistics"),
    "tune": ("pipeline.stages.tune", "DVC stage: run the Optuna study configured in params.yaml"),
    "sweep": ("pipeline.study.sweep", "launch or resume a sweep: trials, workers, storage, study name"),
    "train": ("pipeline.stages.train", "train the final network (the study's best parameters by default)"),
    "evaluate": ("pipeline.stages.evaluate", "score the final network once on the test split"),
    "report": ("pipeline.stages.report", "write the bias/variance diagnosis report"),
    "gradcheck": ("pipeline.stages.gradcheck", "check backprop gradients against finite differences"),
    "ui": ("pipeline.stages.ui", "browse the study's runs in the MLflow UI on 127.0.0.1"),
}


# The network core raises its own errors (it imports numpy only); this is the one place they
# become exit codes. Looked up by name so that --help does not import the network.
NETWORK_ERRORS: dict[str, type[PipelineError]] = {"Diverged": NumericalError, "ModelFileError": DataError}


def exit_code(error: BaseException) -> int | None:
    """The documented exit code of an error a person should see as one line; None for a bug."""
    if isinstance(error, PipelineError):
        return error.exit_code
    nn = sys.modules.get("pipeline.nn")
    for name, kind in NETWORK_ERRORS.items():
        if nn is not None and isinstance(error, getattr(nn, name)):
            return kind.exit_code
    return None


def build_parser() -> argparse.ArgumentParser:
    # Help text comes from docstrings, written in reST: shown as plain text (no ``literal`` marks).
    parser = argparse.ArgumentParser(prog="pipeline", description=first_paragraph(__doc__))
    parser.add_argument("--version", action="version", version=f"pipeline {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show third-party output: MLflow progress bars, INFO lines, warnings",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    top, rest = parser.parse_known_args(argv)
    top.verbose = top.verbose or "--verbose" in rest  # also accepted after the command
    with quiet_third_party(top.verbose):  # from the import on: libraries warn as they load, too
        return _run(top, rest)


def _run(top: argparse.Namespace, rest: list[str]) -> int:
    module = importlib.import_module(COMMANDS[top.command][0])
    description = first_paragraph(module.__doc__) or COMMANDS[top.command][1]
    sub = argparse.ArgumentParser(prog=f"pipeline {top.command}", description=description)
    sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub.add_argument("--verbose", action="store_true", help="also show third-party output (as before the command)")
    module.configure(sub)
    args = sub.parse_args(rest)
    args.debug, args.verbose = top.debug, top.verbose
    try:
        return int(module.run(args) or 0)
    except Exception as e:
        code = exit_code(e)
        if code is None or top.debug or os.environ.get("PIPELINE_DEBUG"):
            raise
        print(f"error: {top.command}: {e}" if code == NumericalError.exit_code else f"error: {e}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
