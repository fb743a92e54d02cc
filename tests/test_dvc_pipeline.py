"""End to end: the DVC pipeline on a fresh copy of the repository (offline, tiny epochs).

Checks: ``dvc repro`` runs every stage; a second ``dvc repro`` runs nothing; changing one train
param reruns exactly the stages that read it and those downstream; ``dvc exp run -S`` works;
``dvc metrics show/diff`` and ``dvc params diff`` show our files; a failing stage under ``dvc repro``
leaves the previous outputs in place; queued experiments (which run in temporary copies) add to
the workspace's study and MLflow store.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.checkout import GIT, copy_checkout
from tests.data.helpers import tree_bytes

OUR_STAGES = ["prepare", "split", "train", "evaluate", "tune", "report"]
# Keep every stage tiny (sections other engineers own are only touched where present); train uses
# params.yaml, not the study winner, so the checks below do not depend on what the study found.
OVERRIDES = {"train": {"epochs": 3, "use_study_best": False}, "model": {"hidden_layers": [16]}, "tune": {"n_trials": 2}}


def sh(cwd: Path, *argv: str, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def set_param(path: Path, section: str, key: str, value: object) -> None:
    doc = yaml.safe_load(path.read_text())
    doc[section][key] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def affected_by(dvc_yaml: dict, param: str) -> set[str]:
    """Stages that list ``param`` (or its section) and every stage downstream of them."""
    stages = dvc_yaml["stages"]

    def paths(entries: list) -> list[str]:
        return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]

    outs = {n: paths(s.get("outs")) + paths(s.get("metrics")) + paths(s.get("plots")) for n, s in stages.items()}
    hit = {n for n, s in stages.items() if {param, param.split(".")[0]} & set(paths(s.get("params")))}
    changed = True
    while changed:  # a stage is downstream if one of its deps is (inside) an out of an affected stage
        changed = False
        for n, s in stages.items():
            if n in hit:
                continue
            made = [o for m in hit for o in outs[m]]
            if any(
                d == o or d.startswith(o + "/") or o.startswith(d + "/") for d in paths(s.get("deps")) for o in made
            ):
                hit.add(n)
                changed = True
    return hit


def fresh_copy(tmp_path: Path, tracking_uri: str | None) -> tuple[Path, dict[str, str]]:
    """The tracked and untracked-not-ignored files of this checkout in a new git repository."""
    repo = tmp_path / "repo"
    copy_checkout(repo, commit=False)
    params = repo / "params.yaml"
    doc = yaml.safe_load(params.read_text())
    for section, values in OVERRIDES.items():
        if section in doc:
            doc[section].update(values)
    params.write_text(yaml.safe_dump(doc, sort_keys=False))

    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",  # dvc and python from this venv
        "PYTHONPATH": "",
        "DVC_NO_ANALYTICS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PIPELINE_HOME", None)
    if tracking_uri is not None:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    sh(repo, *GIT, "init", "-q", env=env)
    sh(repo, *GIT, "add", "-A", env=env)
    sh(repo, *GIT, "commit", "-qm", "fresh clone", env=env)
    return repo, env


@pytest.mark.slow
def test_dvc_pipeline_on_a_fresh_copy(tmp_path: Path) -> None:
    repo, env = fresh_copy(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = repo / "params.yaml"

    first = sh(repo, "dvc", "repro", env=env).stdout
    assert set(OUR_STAGES) <= ran(first), first
    for out in ("data/prepared/X.npy", "data/split/X_test.npy", "models/final.npz", "reports/metrics.json"):
        assert (repo / out).is_file(), out
    second = sh(repo, "dvc", "repro", env=env).stdout
    assert ran(second) == set() and "Data and pipelines are up to date" in second, second

    sh(repo, *GIT, "add", "-A", env=env)
    sh(repo, *GIT, "commit", "-qm", "outputs", env=env)
    set_param(params, "train", "epochs", 4)
    third = sh(repo, "dvc", "repro", env=env).stdout
    expected = affected_by(yaml.safe_load((repo / "dvc.yaml").read_text()), "train.epochs")
    assert {"train", "evaluate"} <= expected and not {"prepare", "split"} & expected
    assert ran(third) == expected, third

    # A key the study searches over (its value is replaced in every trial) reruns train, not the study.
    sh(repo, *GIT, "add", "-A", env=env)
    sh(repo, *GIT, "commit", "-qm", "epochs", env=env)
    set_param(params, "train", "learning_rate", 0.002)
    fourth = sh(repo, "dvc", "repro", env=env).stdout
    assert ran(fourth) == {"train", "evaluate", "report"}, fourth

    assert "train.learning_rate" in sh(repo, "dvc", "params", "diff", env=env).stdout
    diff = sh(repo, "dvc", "metrics", "diff", "--all", env=env).stdout
    assert "reports/train.json" in diff and "epochs" in diff
    shown = sh(repo, "dvc", "metrics", "show", env=env).stdout
    assert "reports/metrics.json" in shown and "test_error" in shown

    sh(repo, "git", "checkout", "--", "params.yaml", env=env)
    sh(repo, "dvc", "checkout", "-q", env=env)
    exp = sh(repo, "dvc", "exp", "run", "-S", "train.epochs=2", env=env).stdout
    assert {"train", "evaluate"} <= ran(exp) and not {"prepare", "split"} & ran(exp), exp
    assert '"epochs": 2' in (repo / "reports/train.json").read_text()

    # a failing stage under dvc repro: persist + atomic writes keep the previous outputs
    before = tree_bytes(repo / "data/prepared")
    doc = yaml.safe_load(params.read_text())
    doc["data"].update(source="npz", path="data/raw/missing.npz")
    params.write_text(yaml.safe_dump(doc, sort_keys=False))
    failed = sh(repo, "dvc", "repro", "prepare", env=env, ok=False)
    assert failed.returncode != 0 and "data.path 'data/raw/missing.npz' not found" in failed.stderr + failed.stdout
    assert tree_bytes(repo / "data/prepared") == before


@pytest.mark.slow
def test_queued_experiments_share_the_workspace_study_and_mlflow_store(tmp_path: Path) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    repo, env = fresh_copy(tmp_path, tracking_uri=None)  # the default store: <repo>/mlflow.db
    sh(repo, "dvc", "repro", env=env)
    storage = f"sqlite:///{repo / 'studies' / 'optuna.db'}"
    study_name = json.loads((repo / "studies/where.json").read_text())["study_name"]  # <base>-<fingerprint>
    assert len(optuna.load_study(study_name=study_name, storage=storage).trials) == 2
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")

    def run_names() -> list[str]:
        experiment = client.get_experiment_by_name(study_name)
        return sorted(r.info.run_name for r in client.search_runs([experiment.experiment_id], max_results=1000))

    assert [n for n in run_names() if n.startswith("trial-")] == ["trial-0", "trial-1"]
    assert len(client.search_model_versions("name = 'digits-mlp'")) == 1

    sh(repo, *GIT, "add", "-A", env=env)
    sh(repo, *GIT, "commit", "-qm", "outputs", env=env)
    sh(repo, "dvc", "exp", "run", "--queue", "-S", "tune.n_trials=3", env=env)
    sh(repo, "dvc", "queue", "start", env=env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        status = sh(repo, "dvc", "queue", "status", env=env).stdout
        if "Success" in status or "Failed" in status:
            break
        time.sleep(2)
    assert "Success" in status, status + sh(repo, "dvc", "queue", "logs", "--follow", env=env, ok=False).stdout

    # the experiment ran in .dvc/tmp/exps/<copy>, yet resumed the workspace's study (2 -> 3 trials)
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert len(study.trials) == 3
    names = run_names()  # and logged its runs to the workspace's MLflow store
    assert [n for n in names if n.startswith("trial-")] == ["trial-0", "trial-1", "trial-2"]
    assert len([n for n in names if n.startswith("sweep-")]) == 2  # one parent run per sweep
    assert not list((repo / ".dvc" / "tmp").rglob("mlflow.db"))


@pytest.mark.slow
def test_the_reports_next_command_runs_new_trials_and_moves_the_diagnosis(tmp_path: Path) -> None:
    """The decision loop on the default data: dvc repro, then the diagnosis's own next_command."""
    import optuna

    repo, env = fresh_copy(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    set_param(repo / "params.yaml", "train", "use_study_best", True)
    sh(repo, "dvc", "repro", env=env)
    before = json.loads((repo / "reports/diagnosis.json").read_text())
    first_study = json.loads((repo / "studies/where.json").read_text())["study_name"]
    command = before["next_command"]
    assert command.startswith("dvc exp run ") and before["remedies"][0]["set"], before["remedies"]
    sh(repo, *GIT, "add", "-A", env=env)
    sh(repo, *GIT, "commit", "-qm", "baseline", env=env)

    ran_exp = sh(repo, *shlex.split(command), env=env).stdout
    assert "tune" in ran(ran_exp), ran_exp  # the remedy changes what the study measured
    after = json.loads((repo / "reports/diagnosis.json").read_text())
    storage = f"sqlite:///{repo / 'studies' / 'optuna.db'}"
    studies = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    second_study = json.loads((repo / "studies/where.json").read_text())["study_name"]
    applied = before["remedies"][0]["set"]
    if any(key.startswith(("tune.space", "split", "train", "model")) for key in applied):
        assert second_study != first_study and studies[second_study] == 2, studies  # new trials, new study
    assert after != before and after["previous"] is not None
    markdown = (repo / "reports/diagnosis.md").read_text()
    assert "Before and after" in markdown and any(key in markdown for key in applied), markdown[:2000]
