"""`python -m pipeline gradcheck` prints the relative difference and fails above the threshold."""

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]


def gradcheck(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "gradcheck", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("classes", ["2", "3"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
def test_small_networks_pass_for_every_hidden_activation(activation: str, classes: str, capsys) -> None:
    # `--layers 4,3 --activation relu` used to report 1.03e-1 and exit 1: zero biases put a
    # pre-activation exactly on ReLU's kink. The command now checks at nn.check_weights.
    args = ["--params", str(REPO / "params.yaml"), "--layers", "4,3", "--activation", activation, "--classes", classes]
    assert main(["gradcheck", *args]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and float(out.split("relative difference ")[1].split()[0]) < 1e-7


def test_an_impossible_threshold_fails_with_exit_code_one(capsys) -> None:
    args = ["--params", str(REPO / "params.yaml"), "--layers", "4,3", "--activation", "tanh", "--l2", "0.5"]
    assert main(["gradcheck", *args, "--threshold", "1e-30"]) == 1  # the exit code: pipeline/__main__.py returns it
    out = capsys.readouterr().out
    assert "FAILED" in out and "(6, 4, 3, 3)" in out


def test_bad_options_are_one_line_errors_with_exit_code_two(tmp_path: Path, capsys) -> None:
    done = gradcheck("--layers", "4,x")  # through a real process: the exit status and no traceback
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--layers" in done.stderr
    bad = tmp_path / "params.yaml"
    bad.write_text("train: {lr: 0.1}\n")
    assert main(["gradcheck", "--params", str(bad)]) == 2
    assert "unknown key 'train.lr'" in capsys.readouterr().err


def test_the_configured_architecture_passes_checked_in_float64(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Finite differences at epsilon 1e-7 need double precision: float32 would read ~1e-3 on a correct backward."""
    from pipeline.config import load_params
    from pipeline.stages import gradcheck as stage

    seen = []
    real = stage.gradient_check

    def spy(X, y, weights, arch, **kwargs):
        seen.append((arch.dtype, X.dtype.name, {w.dtype.name for w in weights.values()}))
        return real(X, y, weights, arch, **kwargs)

    monkeypatch.setattr(stage, "gradient_check", spy)
    assert load_params(REPO / "params.yaml").model.dtype == "float32"
    assert main(["gradcheck", "--params", str(REPO / "params.yaml")]) == 0
    assert seen == [("float64", "float64", {"float64"})]
    assert float(capsys.readouterr().out.split("relative difference ")[1].split()[0]) < 1e-7
