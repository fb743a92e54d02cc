"""A remedy as a change of ``params.yaml`` keys: read a dotted key, apply a change, print the command.

A change is ``{"<dotted key>": <new value>}`` with leaf keys only (``tune.space.n_units.high``, not
``tune.space.n_units``), so ``dvc exp run -S 'key=value'`` can set each one and a key that does not
exist in ``pipeline.config.Params`` fails validation here instead of in a user's experiment.
"""

from __future__ import annotations

import copy
import dataclasses
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from pipeline.config import Params, params_from_dict
from pipeline.errors import ConfigError

_MISSING = object()


@dataclass(frozen=True)
class Remedy:
    """One remedy: a change of params.yaml keys, what it should shrink (a key of ``remedies.ADDRESSES``)
    and why, in words."""

    set: dict[str, Any]  # dotted params.yaml key -> new value
    addresses: str
    why: str


def as_raw(params: Params) -> dict[str, Any]:
    """Params as the plain mapping ``params_from_dict`` reads (tuples as lists, as YAML gives them)."""

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        return x

    return plain(dataclasses.asdict(params))


def get_key(raw: Mapping[str, Any], key: str, default: Any = _MISSING) -> Any:
    """The value at a dotted key of a nested mapping; ``default`` (or KeyError) when a part is absent."""
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is _MISSING:
                raise KeyError(key)
            return default
        node = node[part]
    return node


def with_changes(raw: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``raw`` with each dotted key set (missing parents are created)."""
    out = copy.deepcopy(dict(raw))
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return out


def same(a: Any, b: Any) -> bool:
    """Equal as params values: 0.2 == 0.2000000001, [64, 32] == (64, 32), 1 == 1.0."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return a == b


def new_keys(params: Params, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``changes`` that differs from the current params (a key absent from Params is kept)."""
    raw = as_raw(params)
    return {k: v for k, v in changes.items() if not same(get_key(raw, k, _MISSING), v)}


def validate(params: Params, changes: Mapping[str, Any]) -> Params:
    """Params with the change applied; ConfigError when a key is unknown or a value invalid."""
    return params_from_dict(with_changes(as_raw(params), changes), source="remedy")


def is_valid(params: Params, changes: Mapping[str, Any]) -> bool:
    try:
        validate(params, changes)
    except ConfigError:
        return False
    return True


def proposed(x: float) -> float:
    """A proposed float value, to 3 significant digits. (``dvc exp run -S`` writes 1e-05 without a
    dot; ``load_params`` reads that as a number, as YAML 1.2 does.)"""
    return float(f"{x:.3g}")


def yaml_scalar(value: Any) -> str:
    """A value as DVC's ``-S`` (Hydra's override grammar) and PyYAML both read it back.

    Floats always carry a dot (``5.0e-05``, never ``5e-05``, which PyYAML reads as text); lists are
    ``[a,b]``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.6g}"
        mantissa, _, exponent = text.partition("e")
        if "." not in mantissa:
            mantissa += ".0"
        return f"{mantissa}e{int(exponent):+03d}" if exponent else mantissa
    if isinstance(value, list | tuple):
        return "[" + ",".join(yaml_scalar(v) for v in value) + "]"
    return str(value)


def next_command(changes: Mapping[str, Any]) -> str:
    """``dvc exp run -S 'key=value' ...`` applying a change to params.yaml."""
    pairs = (f"{k}={yaml_scalar(v)}" for k, v in changes.items())
    return " ".join(["dvc exp run", *(f"-S {_quoted(p)}" for p in pairs)])


def _quoted(word: str) -> str:
    # Always quoted, so the line reads the same whatever the value ([a,b] needs it in every shell).
    return f"'{word}'" if "'" not in word else shlex.quote(word)


def parse_command(command: str) -> dict[str, Any]:
    """The ``-S key=value`` pairs of a ``next_command``, values read as YAML (the inverse of ``next_command``)."""
    words = shlex.split(command)
    out: dict[str, Any] = {}
    for flag, pair in zip(words[3::2], words[4::2], strict=True):
        if flag != "-S" or "=" not in pair:
            raise ValueError(f"not a '-S key=value' pair: {flag} {pair}")
        key, _, value = pair.partition("=")
        out[key] = yaml.safe_load(value)
    return out
