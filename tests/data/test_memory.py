"""The working-set estimates (pipeline.data.memory) and the stages' refusal to start what cannot fit."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from pipeline import nn
from pipeline.cli import main
from pipeline.config import load_params
from pipeline.data import memory
from pipeline.errors import DataError
from tests.data.helpers import write_params

FAST = {"train": {"epochs": 2, "use_study_best": False}, "model": {"hidden_layers": [16]}, "tune": {"n_trials": 1}}


def test_training_bytes_adds_up_what_fit_allocates() -> None:
    """Hand-counted for a 4-8-3 network, 100 examples, batch 10, 20 dev examples, float32, gd."""
    dims, m, m_dev, b = (4, 8, 3), 100, 20, 10
    params = (8 * 5 + 3 * 9) * 4 * 2  # weights and gradients
    per_column = 4 + 3 + 8 * 2 + 2 * 3 + 2 * 8  # gathered batch, Y, Z and A, output and dZ, backward temporaries
    dev = 20 * (2 * 8 + 3 * 3)
    labels = 100 * 3 * 4 + 100 * 16 + 20 * 16
    predict = 100 * 2 * (8 + 3) * 4  # the whole train split fits in one prediction chunk
    expected = params + (b * per_column + dev) * 4 + labels + predict + memory.PROCESS_BYTES
    assert memory.training_bytes(dims, m, m_dev, b, optimizer="gd") == expected
    adam = memory.training_bytes(dims, m, m_dev, b, optimizer="adam")
    assert adam - expected == 2 * (8 * 5 + 3 * 9) * 4  # two moments per parameter


def test_training_bytes_counts_every_copy_of_the_rows() -> None:
    dims, m, m_dev = (784, 128, 10), 100_000, 1000
    base = memory.training_bytes(dims, m, m_dev, 64)
    rows = (m + m_dev) * 784
    assert memory.training_bytes(dims, m, m_dev, 64, itemsize=8) - base > rows * 8  # float64: a converted copy
    assert memory.training_bytes(dims, m, m_dev, 64, cv_folds=5) - base > 5 * m * 784 * 4  # the fold copies
    assert memory.training_bytes(dims, m, m_dev, 0) - base > m * 2 * 128 * 4  # full batch: every activation
    assert memory.training_bytes(dims, m, m_dev, 64, copied_rows=m // 2) - base == m // 2 * 784 * 4
    assert memory.PREDICT_BYTES == nn.network.PREDICT_BYTES  # the chunk it counts is the one predict uses


def test_the_estimate_bounds_what_fit_and_predict_allocate(tmp_path: Path) -> None:
    """On a memory-mapped split, the traced peak of a trial's fit and scoring stays within the estimate
    (less the interpreter's share) and is not a small part of it."""
    rng = np.random.default_rng(0)
    m, m_dev, n_x = 20_000, 2_000, 64
    np.save(tmp_path / "X.npy", rng.standard_normal((m, n_x), dtype=np.float32))
    np.save(tmp_path / "Xd.npy", rng.standard_normal((m_dev, n_x), dtype=np.float32))
    X, X_dev = np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "Xd.npy", mmap_mode="r")
    y, y_dev = rng.integers(0, 10, m), rng.integers(0, 10, m_dev)
    arch = nn.Architecture.build(n_x, 10, (128, 128), dtype="float32")
    hp = nn.FitOptions(learning_rate=0.01, epochs=1, batch_size=256, keep_prob=0.8)
    estimate = memory.training_bytes(arch.layer_dims, m, m_dev, 256, dropout=True) - memory.PROCESS_BYTES
    tracemalloc.start()
    try:
        result = nn.fit(X.T, y, arch, hp, X_dev=X_dev.T, y_dev=y_dev, seed=0)
        nn.error_rate(X.T, y, result.weights, arch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert estimate / 4 < peak <= estimate, f"traced {peak / 1e6:.1f} MB, estimated {estimate / 1e6:.1f} MB"


def test_largest_m_is_the_edge_of_what_the_stages_admit() -> None:
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    m = memory.largest_m(params, 784, 10, 16 * 2**30, cores=2)
    assert 3_000_000 < m < 16 * 2**30 // (784 * 4)  # the float32 rows themselves bound it
    assert memory.largest_m(params, 784, 10, 2**20, cores=2) == 0  # 1 MiB: not even the interpreters


# --- the stages refuse before they allocate or write ---------------------------------------------------


def cli(*argv: str) -> int:
    tracking = ["--no-tracking"] if argv[0] in ("train", "tune", "report") else []
    return main([*argv, "--params", "params.yaml", *tracking])


def refusal(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def tiny_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine has 1 MiB available: every stage's estimate exceeds it."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)


def test_prepare_refuses_rows_that_cannot_fit(repo: Path, capsys, monkeypatch) -> None:
    write_params(repo, {"data": {"source": "synthetic", "synthetic": {"m": 5000, "height": 28, "width": 28}}})
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    assert cli("prepare") == 3
    line = refusal(capsys)
    assert "data/prepared/X.npy (5000 x 784 float32 rows, which the split stage maps) needs about" in line
    assert "in memory (15 MiB of mapped rows + " in line and "but 1 MiB are available; lower data.synthetic.m" in line
    assert not Path("data/prepared").exists()


def test_split_refuses_and_writes_nothing(repo: Path, capsys, monkeypatch) -> None:
    write_params(repo, FAST)
    assert cli("prepare") == 0
    monkeypatch.setattr(memory, "available_bytes", lambda: 2**20)
    assert cli("split") == 3
    assert "data/prepared/X.npy (1797 x 64 float32 rows) needs about" in refusal(capsys)
    assert not Path("data/split").exists() and not Path("reports/split.json").exists()


@pytest.fixture
def split_repo(repo: Path) -> Path:
    write_params(repo, FAST)
    assert cli("prepare") == 0 and cli("split") == 0
    return repo


def test_train_refuses_before_fitting(split_repo: Path, capsys, tiny_memory) -> None:
    assert cli("train") == 3
    line = refusal(capsys)
    assert line.startswith("error: train: the network [64, 16, 10] on 1761 x 64 rows needs about")
    assert "lower train.batch_size (0 is full batch) or model.hidden_layers" in line
    assert not Path("models/final.npz").exists() and not Path("reports/train.json").exists()


def test_tune_refuses_before_the_study_exists(split_repo: Path, capsys, tiny_memory) -> None:
    assert cli("tune") == 3
    line = refusal(capsys)
    assert "tune: 1 worker(s) training up to 3 x 128 units on 1761 x 64 rows needs about" in line
    assert "lower tune.n_workers, tune.space.n_units.high or n_layers.high" in line
    assert not Path("studies/optuna.db").exists() and not Path("reports/study").exists()


def test_the_report_refuses_before_retraining(split_repo: Path, tiny_memory) -> None:
    from pipeline.stages.report import write_report

    with pytest.raises(DataError, match=r"^report: retraining on 1761 x 64 rows needs about .* lower report"):
        write_report(load_params("params.yaml"), split_repo)
    assert not Path("reports/diagnosis.md").exists() and not Path("reports/diagnosis.json").exists()


def test_a_split_that_cannot_be_mapped_exits_3_in_one_line(split_repo: Path, capsys, monkeypatch) -> None:
    real = np.load

    def load(path, mmap_mode=None, **kwargs):
        if mmap_mode is not None and "X_train" in str(path):
            raise OSError(12, "Cannot allocate memory")  # what mmap says past the address-space limit
        return real(path, mmap_mode=mmap_mode, **kwargs)

    monkeypatch.setattr(np, "load", load)
    assert cli("train") == 3
    line = refusal(capsys)
    assert "data/split/X_train.npy: cannot be memory-mapped ([Errno 12] Cannot allocate memory)" in line
    assert "raise the address-space limit (ulimit -v)" in line
    monkeypatch.setattr(np, "load", real)
    with open("data/split/X_train.npy", "r+b") as f:  # a truncated file is another matter
        f.truncate(1000)
    assert cli("train") == 3
    assert "data/split/X_train.npy: not a readable .npy array" in refusal(capsys)
    assert not Path("models/final.npz").exists()
