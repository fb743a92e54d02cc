"""Each trial's BLAS threads: chosen per network, overridden by params.yaml or --threads, logged on its run."""

from __future__ import annotations

import dataclasses

import optuna

from pipeline.config import load_params
from pipeline.study.config import config_from_params
from pipeline.study.objective import Objective, TrialData


def blas_pool_at_fit(monkeypatch) -> list[int]:
    """The BLAS threads in effect each time ``nn.fit`` starts, appended to the returned list."""
    from threadpoolctl import threadpool_info

    from pipeline import nn

    seen, real_fit = [], nn.fit

    def spy(*args, **kwargs):
        seen.append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(nn, "fit", spy)
    return seen


def test_each_trial_limits_blas_threads(workspace, monkeypatch):
    seen = blas_pool_at_fit(monkeypatch)
    params = load_params("params.yaml")
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.optimize(Objective(params, TrialData.read()), n_trials=1)  # digits-size: one thread
    study.optimize(Objective(params, TrialData.read(), threads=2), n_trials=1)  # as the sweep asks
    assert seen == [1, 2]
    assert [t.user_attrs["blas_threads"] for t in study.trials] == [1, 2]


def test_the_blas_threads_override_reaches_the_pool_and_the_trial_run(workspace, mlflow_store, monkeypatch):
    """train.blas_threads in params.yaml sets every trial's BLAS pool; sweep --threads wins over it."""
    from pipeline import tracking

    seen = blas_pool_at_fit(monkeypatch)
    params = load_params("params.yaml")
    params = dataclasses.replace(params, train=dataclasses.replace(params.train, blas_threads=2))
    parent = tracking.prepare_study_run("digits-mlp")
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    for cfg in (config_from_params(params), config_from_params(params, threads=1)):  # params.yaml, then --threads 1
        study.optimize(Objective(params, TrialData.read(), parent, threads=cfg.blas_threads), n_trials=1)
    assert seen == [2, 1]
    client = tracking.MlflowClient(mlflow_store)
    tags = [client.get_run(t.user_attrs["mlflow_run_id"]).data.tags["blas_threads"] for t in study.trials]
    assert tags == ["2", "1"] and [t.user_attrs["blas_threads"] for t in study.trials] == [2, 1]


def test_a_trial_scores_its_network_under_its_own_limit(workspace, monkeypatch):
    """Every product of a trial runs under its limit: one run with the process's pool would wake the
    pool's idle threads, which spin on the core of the next worker."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from pipeline import nn

    seen: dict[str, list[int]] = {"predict": [], "error_rate": []}
    for name in seen:
        real = getattr(nn, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            seen[_name].append(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
            return _real(*args, **kwargs)

        monkeypatch.setattr(nn, name, spy)
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    with threadpool_limits(limits=1, user_api="blas"):  # the process's pool, unlike the trial's
        study.optimize(Objective(load_params("params.yaml"), TrialData.read(), threads=2), n_trials=1)
    assert seen == {"predict": [2], "error_rate": [2]}
