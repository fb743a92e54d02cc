"""A study's identity: a fingerprint of everything a trial's score depends on.

A trial's score is a function of seven things, each hashed as one named part:

- ``train_data``, ``dev_data``: the bytes of ``X_<split>.npy`` and ``y_<split>.npy`` (streamed);
- ``split``: the split fractions and the seed that drew it;
- ``space``: ``tune.space``, what the sampler draws from;
- ``fixed``: every training setting a trial reads that the space does not search (``fixed_keys``);
- ``scoring``: what the score is, ``tune.cv_folds`` (0: the dev error; k: the mean error over k
  folds of train). Scores of two rules are not comparable, so it is never mixed (STRICT_PARTS);
- ``code``: the source of the network core and of the objective (``CODE_FILES``).

The study in storage is named ``<tune.study_name>-<digest>``; the parts and the readable settings
are stored on it (user attributes) and on every MLflow run (tags ``fingerprint.<part>``), so a
changed part starts a new study instead of mixing old and new scores, and a person can see which
part changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import nn
from pipeline.config import Params
from pipeline.data.store import split_digest
from pipeline.study.space import searched_train_keys

PARTS = ("train_data", "dev_data", "split", "space", "fixed", "scoring", "code")
# A study never mixes trials scored on other data, by another rule or by other code, not even with --allow-mixed.
STRICT_PARTS = ("train_data", "dev_data", "scoring", "code")
PACKAGE = Path(__file__).resolve().parents[1]  # the `pipeline` package
CODE_FILES = ("nn/*.py", "study/objective.py", "study/space.py", "study/cv.py")  # relative to PACKAGE
SHORT = 12  # hex characters of a part's hash


@dataclass(frozen=True)
class Fingerprint:
    parts: dict[str, str]  # part -> short sha256
    digest: str  # 8 hex characters over all parts: the study name's suffix
    settings: dict[str, Any]  # the readable values behind split, space, fixed and scoring

    def tags(self) -> dict[str, str]:
        return run_tags(self.digest, self.parts)


def run_tags(digest: str, parts: dict[str, str]) -> dict[str, str]:
    """The MLflow tags of a run scored under a fingerprint: ``fingerprint`` and ``fingerprint.<part>``."""
    return {"fingerprint": digest} | {f"fingerprint.{k}": v for k, v in parts.items()}


def fingerprint(params: Params, split_dir: str | Path) -> Fingerprint:
    """Hash the train and dev files in ``split_dir``, the settings in ``params`` and the trial code."""
    split_dir = Path(split_dir)
    settings = {
        "split": {**{f"split.{k}": v for k, v in dataclasses.asdict(params.split).items()}, "seed": params.seed},
        "space": dataclasses.asdict(params.tune.space),
        "fixed": {key: _lookup(params, key) for key in fixed_keys(params)},
        "scoring": {"tune.cv_folds": params.tune.cv_folds},
    }
    parts = {
        "train_data": split_digest(split_dir, "train"),
        "dev_data": split_digest(split_dir, "dev"),
        **{name: _json_hash(value) for name, value in settings.items()},
        "code": code_hash(),
    }
    parts = {name: parts[name] for name in PARTS}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]
    return Fingerprint(parts, digest, settings)


def fixed_keys(params: Params) -> tuple[str, ...]:
    """The dotted params.yaml keys of the ``fixed`` part: what a trial reads and the space does not set.

    The seed; the model keys except ``hidden_layers`` (the space's n_layers and n_units replace
    it); and each key ``nn.fit`` takes (``nn.FitOptions``) that ``tune.space`` does not search.
    """
    searched = set(searched_train_keys(params.tune.space))
    model = [f"model.{f.name}" for f in dataclasses.fields(params.model) if f.name != "hidden_layers"]
    train = [f"train.{f.name}" for f in dataclasses.fields(nn.FitOptions) if f.name not in searched]
    return ("seed", *model, *train)


def changed(old_parts: dict[str, str], new_parts: dict[str, str]) -> list[str]:
    """The parts whose hashes differ (a part missing on one side counts as changed), in PARTS order."""
    extra = sorted((set(old_parts) | set(new_parts)) - set(PARTS))
    return [p for p in (*PARTS, *extra) if old_parts.get(p) != new_parts.get(p)]


def setting_changes(old_settings: dict[str, Any], new_settings: dict[str, Any]) -> list[str]:
    """``"key: old -> new"`` for each readable setting that differs, e.g. ``train.epochs: 10 -> 12``."""
    old, new = _flatten(old_settings), _flatten(new_settings)
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k, _UNSET) != new.get(k, _UNSET)]
    return [f"{k}: {_show(old.get(k, _UNSET))} -> {_show(new.get(k, _UNSET))}" for k in keys]


def code_hash() -> str:
    files = sorted({p for pattern in CODE_FILES for p in PACKAGE.glob(pattern)})
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:SHORT]


def _json_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:SHORT]


def _lookup(params: Params, dotted: str) -> Any:
    value: Any = params
    for name in dotted.split("."):
        value = getattr(value, name)
    return list(value) if isinstance(value, tuple) else value


def _flatten(settings: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = value

    for part, values in settings.items():
        walk("tune.space" if part == "space" else "", values)
    return flat


_UNSET = object()


def _show(value: Any) -> str:
    return "unset" if value is _UNSET else json.dumps(value)
