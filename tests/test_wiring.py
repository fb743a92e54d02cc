"""dvc.yaml against the code: each stage's deps, params and outs are derived from what it does.

- deps: the static closure of the stage module's imports (lazy ones and ``-m module`` strings
  included) is exactly what the code deps cover; a folder is named only when the stage can import
  all of it, so a stage never reruns for code it cannot reach and always for code it can;
- data deps and outs: paths of ``pipeline/paths.py``;
- params: every key the stage reads while it runs (recorded on the loaded config) is listed, by
  itself or by its section, and every listed entry is read (a section listed whole when the stage
  reads part of it that depends on the data, e.g. ``data`` for prepare).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import shutil
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline import config, paths

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipeline"
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = list(DVC["stages"])
# Every command goes through these; they choose which stage runs, not what it computes.
PLUMBING = {"pipeline/__init__.py", "pipeline/__main__.py", "pipeline/cli.py"}


def _entries(stage: dict, *keys: str) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for k in keys for e in stage.get(k) or []]


def _module_file(name: str) -> Path | None:
    base = REPO / name.replace(".", "/")
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


@functools.cache  # every stage's closure reads the same files: parse each once per run
def _imported(path: Path) -> frozenset[str]:
    """Every pipeline module a file imports anywhere, names as ``python -m`` target, or names as a
    sibling source file (``Path(__file__).with_name("mlflow_model.py")``: code it ships)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    here = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("pipeline."):
            found.add(node.value)  # e.g. [sys.executable, "-m", "pipeline.study.worker"]
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.endswith(".py")
            and (path.parent / node.value).is_file()
        ):
            found.add(f"{here}.{node.value[:-3]}")
    return frozenset(m for m in found if m.startswith("pipeline") and _module_file(m) is not None)


def closure(module: str) -> set[str]:
    """Repository-relative files of every module ``module`` can import, package __init__s included."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            prefix = ".".join(parts[:i])
            file = _module_file(prefix)
            if file is not None and prefix not in seen:
                seen.add(prefix)
                todo += sorted(_imported(file))
    return {_module_file(m).relative_to(REPO).as_posix() for m in seen}


def expected_code_deps(files: set[str]) -> set[str]:
    """The fewest paths that cover ``files`` and nothing else: a folder when every module in it is used."""
    files = files - PLUMBING
    out: set[str] = set()

    def cover(folder: Path) -> None:
        inside = {p.relative_to(REPO).as_posix() for p in folder.rglob("*.py")}
        if inside and inside <= files and folder != PACKAGE:
            out.add(folder.relative_to(REPO).as_posix())
            return
        for child in sorted(folder.iterdir()):
            rel = child.relative_to(REPO).as_posix()
            if child.is_dir() and child.name != "__pycache__":
                cover(child)
            elif rel in files and not (child.name == "__init__.py" and child.stat().st_size < 400):
                out.add(rel)  # a near-empty package __init__ (a docstring) is not worth a dep

    cover(PACKAGE)
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_code_deps_are_exactly_what_the_stage_can_import(stage: str) -> None:
    declared = {d for d in _entries(DVC["stages"][stage], "deps") if d.startswith("pipeline")}
    expected = expected_code_deps(closure(f"pipeline.stages.{stage}"))
    assert declared == expected, (
        f"dvc.yaml stage {stage}: missing {sorted(expected - declared)}, stale {sorted(declared - expected)}"
    )


def _path_constants() -> set[str]:
    values = {v for v in vars(paths).values() if isinstance(v, Path)}
    values |= {paths.split_file(k, s) for k in "Xy" for s in paths.SPLITS}
    return {v.as_posix() for v in values}


@pytest.mark.parametrize("stage", STAGES)
def test_data_deps_and_outs_are_paths_of_the_paths_module(stage: str) -> None:
    s = DVC["stages"][stage]
    declared = [d for d in _entries(s, "deps") if not d.startswith("pipeline")] + _entries(
        s, "outs", "metrics", "plots"
    )
    unknown = sorted(set(declared) - _path_constants())
    assert not unknown, f"dvc.yaml stage {stage} names paths pipeline/paths.py does not define: {unknown}"


# --- params: recorded while each stage runs -------------------------------------------------------


def _section_prefixes() -> dict[type, str]:
    """Config dataclass -> its dotted prefix in params.yaml, for the classes that occur once."""
    found: dict[type, list[str]] = {}

    def walk(cls: type, prefix: str) -> None:
        found.setdefault(cls, []).append(prefix)
        for name, tp in typing.get_type_hints(cls).items():
            for option in (tp, *typing.get_args(tp)):
                if dataclasses.is_dataclass(option):
                    walk(option, f"{prefix}{name}.")

    walk(config.Params, "")
    return {cls: prefixes[0] for cls, prefixes in found.items() if len(prefixes) == 1}


@contextlib.contextmanager
def recording_params_reads() -> Iterator[set[str]]:
    """Record every dotted key the stage reads from the Params it loaded.

    Only values that came from params.yaml count: the loaded instances, and in a copy made with
    ``dataclasses.replace`` (a trial's settings) the fields it copied, not the ones the trial set.
    Reads made while a dataclass is copied, built or validated do not count.
    """
    reads: set[str] = set()
    live: dict[int, tuple[object, frozenset[str]]] = {}  # id -> (instance kept alive, fields from the file)
    prefixes = _section_prefixes()
    originals = {cls: cls.__getattribute__ for cls in prefixes}
    copying = [False]
    # Building, validating or printing a config is not reading it.
    quiet = ("__post_init__", "__eq__", "__repr__", "__hash__")

    def make(prefix: str):
        def getattribute(self, name):
            value = object.__getattribute__(self, name)
            entry = live.get(id(self))
            counts = entry is not None and name in entry[1] and not copying[0] and not dataclasses.is_dataclass(value)
            if counts and sys._getframe(1).f_code.co_name not in quiet:
                reads.add(prefix + name)
            return value

        return getattribute

    def collect(obj: object) -> None:
        if dataclasses.is_dataclass(obj) and type(obj) in prefixes:
            live[id(obj)] = (obj, frozenset(f.name for f in dataclasses.fields(obj)))
            for f in dataclasses.fields(obj):
                collect(object.__getattribute__(obj, f.name))

    real_load, real_replace = config.load_params, dataclasses.replace

    def load_params(*args, **kwargs):
        params = real_load(*args, **kwargs)
        collect(params)
        return params

    def replace(obj, /, **changes):
        copying[0] = True
        try:
            new = real_replace(obj, **changes)
        finally:
            copying[0] = False
        entry = live.get(id(obj))
        if entry is not None:
            kept = entry[1] - set(changes)
            live[id(new)] = (new, kept)
            for name in kept:  # sections copied along are the loaded ones: already live
                collect(object.__getattribute__(new, name))
        return new

    for cls, prefix in prefixes.items():
        cls.__getattribute__ = make(prefix)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for module in list(sys.modules.values()):
                if getattr(module, "load_params", None) is real_load:
                    mp.setattr(module, "load_params", load_params)
                if getattr(module, "replace", None) is real_replace:
                    mp.setattr(module, "replace", replace)
            mp.setattr(dataclasses, "replace", replace)
            yield reads
    finally:
        for cls, original in originals.items():
            cls.__getattribute__ = original


def covered(key: str, entries: set[str]) -> bool:
    return any(key == e or key.startswith(e + ".") for e in entries)


@pytest.mark.slow
def test_params_are_exactly_the_keys_each_stage_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.cli import main

    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    doc = yaml.safe_load((tmp_path / "params.yaml").read_text())
    doc["train"]["epochs"], doc["tune"]["n_trials"] = 2, 2
    doc["report"]["learning_curve_fractions"] = [0.5, 1.0]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "data/raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    wrong = []
    for stage in STAGES:
        with recording_params_reads() as reads:
            assert main([stage, "--params", "params.yaml"]) == 0, stage
        declared = set(_entries(DVC["stages"][stage], "params"))
        missing = sorted(k for k in reads if not covered(k, declared))
        stale = sorted(e for e in declared if not any(covered(k, {e}) for k in reads))
        if missing or stale:
            wrong.append(f"{stage}: reads {missing} that dvc.yaml does not list; lists {stale} that it never reads")
    assert not wrong, "dvc.yaml params:\n" + "\n".join(wrong)
