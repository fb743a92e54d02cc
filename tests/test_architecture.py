"""The layering of docs/architecture.md, enforced: every import (lazy ones inside functions too)
points down the stack, the network core imports numpy only, and each choice list is declared once.
"""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

from pipeline import config

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

# Bottom to top, as in docs/architecture.md. A module may import its own layer and those below.
LAYERS: tuple[tuple[str, ...], ...] = (
    # "pipeline": its __init__ (the version only); "console" (stdlib only): the terminal helpers of
    # the edges, the sweep worker's main among them
    ("pipeline", "pipeline.errors", "pipeline.paths", "pipeline.io", "pipeline.console"),
    ("pipeline.config",),
    ("pipeline.nn",),
    ("pipeline.data",),
    ("pipeline.threads",),
    ("pipeline.tracking",),
    ("pipeline.study",),
    ("pipeline.report",),
    ("pipeline.stages", "pipeline.cli", "pipeline.estimator", "pipeline.__main__"),
)
# Edges the order alone would allow but the design does not: the report computes and renders,
# and its stage publishes to MLflow.
FORBIDDEN = {("pipeline.report", "pipeline.tracking")}
NN_MAY_IMPORT = {
    "numpy", "__future__", "dataclasses", "collections", "math", "typing", "json", "io", "time", "zipfile",
    "functools", "ctypes",  # ctypes: nn.blas calls numpy's own BLAS (gemm with a beta)
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement anywhere in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # `from pipeline import tracking` imports the submodule pipeline.tracking
            found += [
                (node.lineno, f"{base}.{a.name}")
                for a in node.names
                if (PACKAGE.parent / base.replace(".", "/") / a.name).exists()
                or (PACKAGE.parent / f"{base.replace('.', '/')}/{a.name}.py").exists()
            ]
    return found


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    if rank is None:
        raise AssertionError(f"{module} belongs to no layer of docs/architecture.md; add it to LAYERS and the doc")
    return rank


def top_package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_every_import_points_down_the_layers(path: Path) -> None:
    here = module_name(path)
    wrong = []
    for line, target in imports(path):
        if not target.startswith("pipeline"):
            continue
        if layer_of(target) > layer_of(here) or (top_package(here), top_package(target)) in FORBIDDEN:
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", sorted((PACKAGE / "nn").rglob("*.py")), ids=lambda p: p.name)
def test_the_network_core_imports_numpy_and_the_standard_library_only(path: Path) -> None:
    outside = [
        f"{path.name}:{line} imports {target}"
        for line, target in imports(path)
        if not target.startswith("pipeline.nn") and target.split(".")[0] not in NN_MAY_IMPORT
    ]
    assert not outside, outside


def test_a_wrong_way_import_is_caught(tmp_path: Path) -> None:
    """The checker itself: a lazy import of the report inside a study function is found."""
    bad = PACKAGE / "study" / "_probe_wrong_way.py"
    bad.write_text("def f():\n    from pipeline.report import diagnosis\n", encoding="utf-8")
    try:
        found = [t for _, t in imports(bad)]
        assert "pipeline.report.diagnosis" in found
        assert layer_of("pipeline.report.diagnosis") > layer_of(module_name(bad))
    finally:
        bad.unlink()


def _literal_choices(tp: object) -> set[str]:
    return set(typing.get_args(tp))


def test_choice_lists_are_declared_once_and_the_tables_match() -> None:
    """config's Literal types are built from its tuples; every implementing table has exactly those keys."""
    from pipeline.data import normalize, sources
    from pipeline.nn import activations, network, optim
    from pipeline.study import config as study_config

    assert _literal_choices(config.Activation) == set(config.ACTIVATIONS) == set(activations.ACTIVATIONS)
    assert _literal_choices(config.Optimizer) == set(config.OPTIMIZERS) == set(optim.OPTIMIZERS)
    assert _literal_choices(config.Init) == set(config.INITS) == set(network.INITIALIZERS)
    assert _literal_choices(config.Pruner) == set(config.PRUNERS) == set(study_config.PRUNERS)
    assert _literal_choices(config.NormalizeMode) == set(config.NORMALIZE_MODES) == set(normalize.MODES)
    assert _literal_choices(config.Source) == set(config.SOURCES) == set(sources.LOADERS)
