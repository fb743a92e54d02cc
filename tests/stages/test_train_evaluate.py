"""The train and evaluate stages on digits, through the command line, with a few epochs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline import nn
from pipeline.cli import main
from pipeline.config import load_params
from pipeline.data.models import load_model
from pipeline.data.normalize import Normalizer
from pipeline.data.split import split_rows
from pipeline.data.store import load_split
from pipeline.io import load_npy
from pipeline.stages import evaluate as evaluate_stage
from pipeline.stages import train as train_stage
from tests.data.helpers import write_params

FAST = {"train": {"epochs": 3, "use_study_best": False}, "model": {"hidden_layers": [16]}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits prepared and split once for this file; each test gets its own copy (``repo``)."""
    root = tmp_path_factory.mktemp("prepared")
    (root / "data" / "raw").mkdir(parents=True)
    write_params(root, FAST)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert cli("prepare") == 0 and cli("split") == 0
    return root


@pytest.fixture
def repo(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding prepared and split digits, as the working directory."""
    shutil.copytree(prepared, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(*argv: str) -> int:
    tracking = ["--no-tracking"] if argv[0] == "train" else []  # MLflow logging is tested in tests/tracking
    return main([*argv, "--params", "params.yaml", *tracking])


def read(path: str) -> object:
    return json.loads(Path(path).read_text())


def test_train_writes_model_history_and_metrics(repo: Path) -> None:
    assert cli("train") == 0
    weights, arch, extra = load_model("models/final")
    assert arch.layer_dims == (64, 16, 10)
    assert extra["classes"] == [str(k) for k in range(10)] and extra["normalizer"]["mode"] == "standardize"
    history = read("reports/train_history.json")
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert set(history[0]) == {"epoch", "train_cost", "dev_cost", "dev_error", "learning_rate"}
    assert history[-1]["train_cost"] < history[0]["train_cost"]
    metrics = read("reports/train.json")
    X, y = load_split("train")
    assert metrics["train_error"] == nn.error_rate(X.T, y, weights, arch)
    assert metrics["epochs"] == 3 and metrics["settings_from"] == "params.yaml"


def test_evaluate_metrics_agree_with_the_model(repo: Path) -> None:
    assert cli("train") == 0 and cli("evaluate") == 0
    m = read("reports/metrics.json")
    weights, arch, _ = load_model("models/final")
    X, y = load_split("test")
    pred = nn.predict(X.T, weights, arch)
    assert m["test_error"] == pytest.approx(np.mean(pred != y)) and m["n_test"] == len(y) == 18
    assert m["test_accuracy"] == pytest.approx(1 - m["test_error"])
    assert m["train_error"] == read("reports/train.json")["train_error"]
    assert "train_dev_error" not in m  # split.train_dev is 0: no such split
    cm = np.array(m["confusion_matrix"]["matrix"])
    assert cm.sum() == 18 and np.trace(cm) == np.sum(pred == y)
    per_class = read("reports/per_class.json")  # not in metrics.json: dvc exp show would make 30 columns of it
    assert [per_class[c]["support"] for c in m["confusion_matrix"]["labels"]] == cm.sum(axis=1).tolist()
    assert "per_class" not in m and all(isinstance(v, int | float) for k, v in m.items() if k != "confusion_matrix")
    rows = [(r["actual"], r["predicted"]) for r in read("reports/confusion.json")]
    assert rows == [(str(a), str(p)) for a, p in zip(y, pred, strict=True)]


def test_raw_pixel_rows_predict_through_the_model_metadata(repo: Path) -> None:
    """The model file alone (weights + normalizer + classes) predicts raw prepared rows like the split."""
    assert cli("train") == 0
    weights, arch, extra = load_model("models/final")
    params = load_params("params.yaml")
    raw_X, raw_y = load_npy("data/prepared/X.npy"), load_npy("data/prepared/y.npy")
    rows = split_rows(raw_X, raw_y, params.split, params.seed)[0]["test"]
    X = Normalizer.from_dict(extra["normalizer"]).transform(raw_X[rows])
    np.testing.assert_array_equal(X, load_split("test")[0])
    labels = [extra["classes"][k] for k in nn.predict(X.T, weights, arch)]
    assert len(labels) == 18 and set(labels) <= set(extra["classes"])


def test_only_evaluate_reads_the_test_split(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, list[str]] = {"train": [], "evaluate": []}
    for name, module in (("train", train_stage), ("evaluate", evaluate_stage)):

        def spy(split: str, *args: object, _name: str = name, **kwargs: object) -> tuple:
            seen[_name].append(split)
            return load_split(split, *args, **kwargs)

        monkeypatch.setattr(module, "load_split", spy)
    assert cli("train") == 0 and cli("evaluate") == 0
    assert sorted(seen["train"]) == ["dev", "train"]
    assert "test" in seen["evaluate"]


def test_study_best_params_are_applied_when_asked(repo: Path) -> None:
    best = {"study_name": "s", "trial_number": 4, "value": 0.1, "params": {"n_layers": 2, "n_units": 7}}
    Path("reports/study").mkdir(parents=True)
    Path("reports/study/best_params.json").write_text(json.dumps(best))
    assert cli("train") == 0  # use_study_best is false in FAST
    assert load_model("models/final")[1].layer_dims == (64, 16, 10)
    write_params(repo, {**FAST, "train": {"epochs": 3, "use_study_best": True}})
    assert cli("train") == 0
    _, arch, extra = load_model("models/final")
    assert arch.layer_dims == (64, 7, 7, 10) and extra["model"]["hidden_layers"] == [7, 7]
    assert read("reports/train.json")["settings_from"] == "study trial 4"


def test_binary_positive_class_trains_a_sigmoid_output(repo: Path) -> None:
    write_params(repo, {**FAST, "data": {"positive_class": 3}})
    assert all(cli(stage) == 0 for stage in ("prepare", "split", "train", "evaluate"))
    assert load_model("models/final")[1].layer_dims == (64, 16, 1)
    assert set(read("reports/per_class.json")) == {"not 3", "3"}


def test_divergence_exits_5(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_params(repo, {**FAST, "train": {"epochs": 3, "use_study_best": False, "learning_rate": 1.0e300}})
    assert cli("train") == 5
    # which layer overflows first depends on the dtype (float32 by default: the first one)
    assert re.fullmatch(
        r"error: train: cost became nan at epoch 1 \(layer [12] exploded\): lower the learning rate",
        capsys.readouterr().err.strip(),
    )
    assert not Path("models").exists()


def test_evaluate_refuses_missing_or_stale_models(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("evaluate") == 3
    assert "final.json: model file not found; run the train stage first" in capsys.readouterr().err
    assert cli("train") == 0
    write_params(repo, {**FAST, "prepare": {"normalize": "scale"}})
    assert cli("split") == 0  # the data changed, the model did not
    capsys.readouterr()
    assert cli("evaluate") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differently normalized data" in err[0]
    assert not Path("reports/metrics.json").exists()


def test_the_final_model_is_exactly_the_best_trial(repo: Path) -> None:
    """Same parameters and the same random stream: the shipped network is the one the study scored."""
    import optuna

    from pipeline.config import load_params
    from pipeline.stages.tune import write_outputs
    from pipeline.study.objective import Objective, TrialData

    write_params(repo, {**FAST, "train": {"epochs": 4, "use_study_best": True}})
    params = load_params("params.yaml")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(Objective(params, TrialData.read()), n_trials=3)
    write_outputs(study, "reports/study")
    assert cli("train") == 0
    trained = read("reports/train.json")
    best = study.best_trial
    assert trained["settings_from"] == f"study trial {best.number}"
    assert trained["dev_error"] == best.user_attrs["dev_error"]
    assert trained["train_error"] == best.user_attrs["train_error"]


def test_train_writes_gradient_health_per_epoch_and_layer(repo: Path) -> None:
    assert cli("train") == 0
    health = read("reports/train_health.json")
    assert [(h["epoch"], h["layer"]) for h in health] == [(e, l) for e in (1, 2, 3) for l in (1, 2)]
    assert all(h["w_norm"] > 0 and h["grad_norm"] >= 0 and h["update_ratio"] >= 0 for h in health)
    assert health[0]["dead_fraction"] is not None and health[1]["dead_fraction"] is None  # relu hidden, output


def test_a_model_no_better_than_the_majority_class_exits_5_and_is_not_saved(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # zero initial weights, no learning to speak of: every prediction is one class
    stuck = {"train": {"epochs": 1, "use_study_best": False, "learning_rate": 1.0e-12}, "model": {"init": "zeros"}}
    write_params(repo, {**FAST, **stuck})
    assert cli("train") == 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no better than always predicting the most frequent training class" in err
    assert not Path("models").exists()
    health = read("reports/train_health.json")  # kept for the diagnosis, with null for an infinite ratio
    assert health and all(h["update_ratio"] is None or h["update_ratio"] >= 0 for h in health)


def test_evaluate_refuses_a_model_with_non_finite_weights(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("train") == 0
    weights = dict(np.load("models/final.npz"))
    weights["W1"][0, 0] = np.nan
    np.savez("models/final.npz", **weights)
    assert cli("evaluate") == 3
    assert "W1 holds NaN or inf weights" in capsys.readouterr().err


def test_a_batch_larger_than_the_training_split_trains_full_batch_with_a_warning(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_params(repo, {**FAST, "train": {"epochs": 2, "use_study_best": False, "batch_size": 100000}})
    assert cli("train") == 0
    out = capsys.readouterr().out
    assert "train: warning: train.batch_size is larger than the 1761 training examples: trained full batch" in out
    assert read("reports/train.json")["batch_clamped"] is True
