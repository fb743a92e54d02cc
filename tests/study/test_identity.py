"""Study identity: the fingerprint's parts, and what `pipeline tune` and `sweep --resume` do when one changes."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from pipeline import cli
from pipeline.config import IntRange, load_params
from pipeline.errors import ConfigError
from pipeline.paths import SPLIT_DIR, STUDY_WHERE
from pipeline.study import identity, launch
from pipeline.study.config import SweepState, config_from_params, from_payload, to_payload
from pipeline.study.launch import open_sweep
from pipeline.study.worker import run_worker
from tests.study.conftest import study_of, write_params, write_split

DEFAULT_FIXED = (
    "seed",
    "model.hidden_activation",
    "model.init",
    "model.dtype",
    "train.epochs",
    "train.batch_size",
    "train.optimizer",
    "train.beta1",
    "train.beta2",
    "train.epsilon",
    "train.lr_decay",
    "train.patience",
)


def test_fixed_keys_are_what_a_trial_reads_and_the_space_does_not_search(workspace):
    params = load_params("params.yaml")
    assert identity.fixed_keys(params) == DEFAULT_FIXED
    space = dataclasses.replace(params.tune.space, epochs=IntRange(5, 9), optimizer=("adam", "gd"))
    searched = dataclasses.replace(params, tune=dataclasses.replace(params.tune, space=space))
    assert "train.epochs" not in identity.fixed_keys(searched) and "train.optimizer" not in identity.fixed_keys(
        searched
    )
    assert identity.fixed_keys(searched) == tuple(
        k for k in DEFAULT_FIXED if k not in ("train.epochs", "train.optimizer")
    )


def test_each_part_moves_with_its_own_cause_only(workspace, tmp_path, monkeypatch):
    params = load_params("params.yaml")
    base = identity.fingerprint(params, SPLIT_DIR)
    assert set(base.parts) == set(identity.PARTS) and re.fullmatch(r"[0-9a-f]{8}", base.digest)
    assert base.settings["fixed"]["train.epochs"] == 10 and base.settings["split"]["seed"] == params.seed
    assert identity.fingerprint(params, SPLIT_DIR) == base  # deterministic

    def parts_changed_by(change) -> list[str]:
        new = change()
        return identity.changed(base.parts, new.parts)

    def edit(name: str, tweak) -> identity.Fingerprint:
        path = SPLIT_DIR / name
        saved = path.read_bytes()
        np.save(path, tweak(np.load(path)))
        try:
            return identity.fingerprint(params, SPLIT_DIR)
        finally:
            path.write_bytes(saved)

    assert parts_changed_by(lambda: edit("X_train.npy", lambda X: X + 1)) == ["train_data"]
    assert parts_changed_by(lambda: edit("y_dev.npy", lambda y: (y + 1) % 3)) == ["dev_data"]
    split = dataclasses.replace(params.split, train=0.9, dev=0.05, test=0.05)
    assert parts_changed_by(lambda: identity.fingerprint(dataclasses.replace(params, split=split), SPLIT_DIR)) == [
        "split"
    ]
    seed = dataclasses.replace(params, seed=7)
    assert parts_changed_by(lambda: identity.fingerprint(seed, SPLIT_DIR)) == ["split", "fixed"]
    train = dataclasses.replace(params.train, patience=3)
    assert parts_changed_by(lambda: identity.fingerprint(dataclasses.replace(params, train=train), SPLIT_DIR)) == [
        "fixed"
    ]
    # A searched key is not part of the fingerprint: the study draws it.
    train = dataclasses.replace(params.train, learning_rate=0.5)
    assert parts_changed_by(lambda: identity.fingerprint(dataclasses.replace(params, train=train), SPLIT_DIR)) == []
    monkeypatch.setattr(identity, "PACKAGE", edited_code(tmp_path))
    assert parts_changed_by(lambda: identity.fingerprint(params, SPLIT_DIR)) == ["code"]


def test_changed_and_setting_changes_name_the_difference():
    assert identity.changed({"a": "1"}, {"a": "1"}) == []
    old = {p: "x" for p in identity.PARTS}
    assert identity.changed(old, {**old, "dev_data": "y", "code": "z"}) == ["dev_data", "code"]
    assert identity.changed({}, old) == list(identity.PARTS)
    old_settings = {"fixed": {"train.epochs": 10}, "space": {"n_units": {"low": 8, "high": 128}, "epochs": None}}
    new_settings = {"fixed": {"train.epochs": 12}, "space": {"n_units": {"low": 8, "high": 54}, "epochs": None}}
    assert identity.setting_changes(old_settings, new_settings) == [
        "train.epochs: 10 -> 12",
        "tune.space.n_units.high: 128 -> 54",
    ]
    assert identity.setting_changes({"space": {"epochs": None}}, {"space": {"epochs": {"low": 2, "high": 4}}}) == [
        "tune.space.epochs: null -> unset",
        "tune.space.epochs.high: unset -> 4",
        "tune.space.epochs.low: unset -> 2",
    ]


def test_the_worker_payload_round_trips(workspace):
    cfg = config_from_params(load_params("params.yaml"), tracking=False, n_workers=2, threads=1, allow_mixed=True)
    fp = identity.fingerprint(cfg.params, cfg.split_dir)
    state = SweepState("s-1", fp.parts, fp.digest, "run", 1.0, 9.0, 3, "s-0", ("space",), ("a: 1 -> 2",))
    assert from_payload(to_payload(cfg, state)) == (cfg, state)


def edited_code(tmp_path: Path) -> Path:
    """A copy of the trial code with one edit in the network core: what `git pull` may bring."""
    copy = tmp_path / "code" / "pipeline"
    for pattern in identity.CODE_FILES:
        for source in identity.PACKAGE.glob(pattern):
            target = copy / source.relative_to(identity.PACKAGE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    network = copy / "nn" / "network.py"
    network.write_text(network.read_text() + "\n# an edit\n")
    return copy


# --- what the commands do when a part changes ----------------------------------------------------


def tune(capsys) -> tuple[int, str]:
    code = cli.main(["tune", "--no-tracking"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def sweep(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["sweep", "--no-tracking", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def edit_params(**sections) -> None:
    doc = yaml.safe_load(Path("params.yaml").read_text())
    for section, values in sections.items():
        if isinstance(doc[section], dict):
            doc[section].update(values)
        else:
            doc[section] = values
    Path("params.yaml").write_text(yaml.safe_dump(doc))


def shift(name: str) -> None:
    path = SPLIT_DIR / name
    np.save(path, np.load(path) + 0.25)


CHANGES = {
    "train_data": (lambda mp, tmp: shift("X_train.npy"), "the train data"),
    "dev_data": (lambda mp, tmp: shift("X_dev.npy"), "the dev data"),
    "split": (lambda mp, tmp: edit_params(split={"train": 0.9, "dev": 0.05, "test": 0.05}), "the split settings"),
    "space": (
        lambda mp, tmp: edit_params(tune={"space": {**SPACE, "n_units": {"low": 8, "high": 20}}}),
        "search space",
    ),
    "fixed": (lambda mp, tmp: edit_params(train={"epochs": 3, "batch_size": 32}), "the fixed training settings"),
    "code": (lambda mp, tmp: mp.setattr(identity, "PACKAGE", edited_code(tmp)), "the network or objective code"),
}
SPACE = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())["tune"]["space"]


@pytest.fixture(scope="module")
def tuned_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose `pipeline tune` ran its one trial, made once and copied by ``tuned``."""
    root = tmp_path_factory.mktemp("tuned")
    write_split(root / SPLIT_DIR)
    write_params(root / "params.yaml", n_trials=1, epochs=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PIPELINE_HOME", str(root))
        mp.chdir(root)
        assert cli.main(["tune", "--no-tracking"]) == 0
    return root


@pytest.fixture
def tuned(workspace, tuned_template, capsys):
    """The workspace after one `pipeline tune`: (workspace, its study)."""
    shutil.copytree(tuned_template, workspace.root, dirs_exist_ok=True)
    capsys.readouterr()
    study = study_of(workspace.default_storage)
    assert study.study_name.startswith("digits-mlp-") and len(study.trials) == 1
    return workspace, study


@pytest.mark.slow  # end to end
@pytest.mark.parametrize("part", list(CHANGES))
def test_a_changed_part_starts_a_new_study_and_refuses_a_resume(tuned, part, capsys, monkeypatch, tmp_path):
    ws, old = tuned
    old_trials, old_attrs = [(t.number, t.state, t.value) for t in old.trials], old.user_attrs
    change, said = CHANGES[part]
    change(monkeypatch, tmp_path)

    code, out = sweep(capsys, "--resume")
    assert code == 2, out
    error = out.strip().splitlines()[-1]
    assert error.startswith("error: ") and f"study '{old.study_name}'" in error and f"{part} changed" in error
    assert "--study-name NEW" in error

    code, out = tune(capsys)
    assert code == 0, out
    new = study_of(ws.default_storage)
    assert new.study_name != old.study_name and new.user_attrs["base_name"] == "digits-mlp"
    assert f"{said}" in out and f"changed since study '{old.study_name}': starting study '{new.study_name}'" in out
    assert len(new.trials) == 1 and new.user_attrs["fingerprint_parts"][part] != old_attrs["fingerprint_parts"][part]
    assert identity.changed(old_attrs["fingerprint_parts"], new.user_attrs["fingerprint_parts"]) == [part]
    again = optuna.load_study(study_name=old.study_name, storage=ws.default_storage)  # untouched
    assert [(t.number, t.state, t.value) for t in again.trials] == old_trials and again.user_attrs == old_attrs
    assert json.loads(STUDY_WHERE.read_text())["study_name"] == new.study_name
    assert json.loads(Path("reports/study/best_params.json").read_text())["study_name"] == new.study_name


def test_an_unchanged_rerun_at_the_cap_runs_nothing_and_says_so(tuned, capsys):
    ws, study = tuned
    code, out = tune(capsys)
    assert code == 0 and f"study '{study.study_name}' is complete: 1/1 trials; nothing to run" in out
    storage = optuna.storages.RDBStorage(ws.default_storage)
    assert [s.study_name for s in storage.get_all_studies()] == [study.study_name]
    assert len(optuna.load_study(study_name=study.study_name, storage=storage).trials) == 1


@pytest.mark.slow  # end to end
def test_allow_mixed_continues_the_old_study_and_records_it(tuned, capsys):
    ws, old = tuned
    assert sweep(capsys, "--allow-mixed")[0] == 2  # only with --resume
    edit_params(tune={"space": {**SPACE, "n_units": {"low": 8, "high": 20}}})
    code, out = sweep(capsys, "--resume", "--allow-mixed", "--n-trials", "2")
    assert code == 0, out
    study = optuna.load_study(study_name=old.study_name, storage=ws.default_storage)
    assert len(study.trials) == 2 and study.user_attrs["fingerprint"] == old.user_attrs["fingerprint"]
    (mixed,) = study.user_attrs["mixed_with"]
    assert mixed["changed"] == ["space"] and mixed["digest"] == study.trials[1].user_attrs["fingerprint"]
    assert study.trials[0].user_attrs["fingerprint"] == old.user_attrs["fingerprint"]
    storage = optuna.storages.RDBStorage(ws.default_storage)
    assert len(storage.get_all_studies()) == 1  # no new study

    shift("X_dev.npy")  # other dev data cannot be mixed in, not even on purpose
    code, out = sweep(capsys, "--resume", "--allow-mixed", "--n-trials", "3")
    assert code == 2 and "dev_data" in out and "--allow-mixed cannot mix data or code" in out


@pytest.mark.slow  # end to end
def test_a_worker_refuses_a_study_of_other_data_or_code(tuned):
    cfg = config_from_params(load_params("params.yaml"), tracking=False, n_trials=2)
    _, state = open_sweep(cfg, resume=True)
    other = dataclasses.replace(state, fingerprint={**state.fingerprint, "code": "0" * 12})
    with pytest.raises(ConfigError, match=r"other code than this worker"):
        run_worker(cfg, other)
    assert run_worker(cfg, state) == 1  # its own fingerprint: it works


@pytest.mark.slow  # end to end
def test_runs_carry_the_fingerprint_and_a_complete_rerun_opens_no_parent_run(workspace, mlflow_store, capsys):
    from pipeline import tracking

    write_params(workspace.root / "params.yaml", n_trials=1, epochs=2)
    assert cli.main(["tune"]) == 0, capsys.readouterr()
    study = study_of(workspace.default_storage)
    client = tracking.MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name(study.study_name)  # one experiment per study
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"sweep-{study.study_name}", "trial-0"]
    parts = study.user_attrs["fingerprint_parts"]
    for run in runs:
        assert run.data.tags["fingerprint"] == study.user_attrs["fingerprint"]
        assert {p: run.data.tags[f"fingerprint.{p}"] for p in identity.PARTS} == parts
    (trial_run,) = [r for r in runs if r.info.run_name == "trial-0"]
    inputs = {i.dataset.name: i.dataset.digest for i in trial_run.inputs.dataset_inputs}
    assert inputs == {"train": parts["train_data"], "dev": parts["dev_data"]}  # the Dataset column
    assert trial_run.data.tags["data_hash"]
    experiments = len(client.search_experiments())

    capsys.readouterr()
    assert cli.main(["tune"]) == 0
    assert "is complete: 1/1 trials; nothing to run" in capsys.readouterr().out
    assert len(client.search_runs([experiment.experiment_id])) == 2  # no new parent run
    assert len(client.search_experiments()) == experiments
    assert "mlflow_parent_run_ids" in study.user_attrs and len(study.user_attrs["mlflow_parent_run_ids"]) == 1


@pytest.mark.slow  # end to end
def test_the_gate_ran_once_and_a_resume_does_not_run_it_again(tuned, monkeypatch, capsys):
    _, study = tuned
    checked = study.user_attrs["gradient_check"]
    assert checked["fingerprint"] == study.user_attrs["fingerprint"] and checked["relative_difference"] < 1e-5

    def fail(*args):
        raise AssertionError("the gate ran again")

    monkeypatch.setattr(launch, "gradient_gate", fail)
    code, out = sweep(capsys, "--resume", "--n-trials", "2")
    assert code == 0 and len(study.trials) == 2, out
