"""The terminal and ``pipeline ui``: plain-text help, no third-party noise, the MLflow UI on 127.0.0.1.

The slow tests share one small study (digits, 3 trials of 5 epochs, a fresh MLflow store) made
through the real command line, then open the UI that ``pipeline ui`` starts in headless Chromium.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import cli, console
from pipeline.errors import ConfigError
from pipeline.stages import ui
from tests.browser import Browser
from tests.data.helpers import write_params

REPO = Path(__file__).resolve().parents[1]
REST_MARKUP = re.compile(r"``|:[a-z]+:`|`_\b|\*\*\w")
NOISE = re.compile(r"it/s|\bINFO\b|[Ww]arning|WARNING")  # tqdm bars, INFO lines ("INFO  [alembic..."), warnings


# --- help as plain text ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rst", "plain"),
    [
        ("Stage ``train``: fit", "Stage train: fit"),
        ("see :func:`pipeline.nn.fit` and :class:`~pipeline.config.Params`", "see pipeline.nn.fit and Params"),
        ("the `MLflow docs <https://mlflow.org>`_ and `target`_", "the MLflow docs and target"),
        ("**not** *this* one, but 2 * 3 * 4 stays", "not this one, but 2 * 3 * 4 stays"),
    ],
)
def test_plain_text_strips_rest_inline_markup(rst: str, plain: str) -> None:
    assert console.plain_text(rst) == plain


def test_top_level_help_is_plain_text() -> None:
    assert "``" in cli.__doc__  # the docstring it comes from is reST
    text = cli.build_parser().format_help()
    assert "python -m pipeline <command>" in text and not REST_MARKUP.search(text), text
    assert "--verbose" in text


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_each_command_help_is_plain_text(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: pipeline {command}" in text and not REST_MARKUP.search(text), text


# --- third-party output ---------------------------------------------------------------------------


def test_quiet_third_party_silences_library_output_and_restores_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in console.QUIET_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "DEBUG")  # a user's own choice is kept
    mlflow_log = logging.getLogger("mlflow.store.db.utils")
    before = mlflow_log.getEffectiveLevel()
    handlers = list(logging.getLogger().handlers)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with console.quiet_third_party(verbose=False):
            assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
            assert os.environ["PYTHONWARNINGS"] == "ignore" and os.environ["MLFLOW_LOGGING_LEVEL"] == "DEBUG"
            assert not mlflow_log.isEnabledFor(logging.WARNING)
            warnings.warn_explicit("few trials", UserWarning, "evaluator.py", 353, module="optuna.importance")
            # matplotlib's warn_external names the first caller outside matplotlib: often ours
            warnings.warn_explicit("identical xlims", UserWarning, "figures.py", 1, module="pipeline.report.figures")
        warnings.warn_explicit("after", UserWarning, "evaluator.py", 354, module="optuna.importance")
    assert [str(w.message) for w in shown] == ["after"]
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ and "PYTHONWARNINGS" not in os.environ
    assert mlflow_log.getEffectiveLevel() == before and logging.getLogger().handlers == handlers


def test_verbose_leaves_third_party_output_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with console.quiet_third_party(verbose=True):
            assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
            warnings.warn_explicit("few trials", UserWarning, "evaluator.py", 353, module="optuna.importance")
    assert [str(w.message) for w in shown] == ["few trials"]


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [(["gradcheck"], False), (["--verbose", "gradcheck"], True), (["gradcheck", "--verbose"], True)],
)
def test_verbose_before_or_after_the_command_turns_the_quieting_off(
    argv: list[str], verbose: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    @contextlib.contextmanager
    def recording(flag: bool) -> Iterator[None]:
        seen.append(flag)
        yield

    monkeypatch.setattr(cli, "quiet_third_party", recording)
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    assert seen == [verbose]


# --- pipeline ui: the parts ------------------------------------------------------------------------


def test_current_study_is_where_json_then_best_params(tmp_path: Path) -> None:
    assert ui.current_study(tmp_path) is None
    (tmp_path / "reports" / "study").mkdir(parents=True)
    (tmp_path / "reports" / "study" / "best_params.json").write_text(json.dumps({"study_name": "from-best"}))
    assert ui.current_study(tmp_path) == "from-best"
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "where.json").write_text(json.dumps({"storage": "sqlite:///x", "study_name": "from-where"}))
    assert ui.current_study(tmp_path) == "from-where"
    (tmp_path / "studies" / "where.json").write_text("{not json")
    assert ui.current_study(tmp_path) == "from-best"


def test_runs_url_opens_mlflow_3s_training_view() -> None:
    url = ui.runs_url("http://127.0.0.1:5000", "7")
    assert url == "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"


def test_the_server_binds_127_0_0_1_only() -> None:
    cmd = ui.mlflow_command("sqlite:////data/mlflow.db", 5005)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "0.0.0.0" not in cmd
    assert cmd[cmd.index("--default-artifact-root") + 1] == "/data/mlruns"  # where pipeline.tracking puts them


def test_a_taken_port_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--port {port}"):
            ui.free_port(port)
    assert ui.free_port(0) > 0


def test_dashboard_asked_for_but_missing_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ui, "dashboard_command", lambda: None)
    assert cli.main(["ui", "--dashboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optuna-dashboard is not installed" in err


class FakeMlflow(http.server.BaseHTTPRequestHandler):
    """Answers get-by-name as an MLflow server does: the experiment, or 404 RESOURCE_DOES_NOT_EXIST."""

    def do_GET(self) -> None:
        known = "experiment_name=digits-mlp" in self.path and self.path.startswith("/api/2.0/mlflow/experiments/")
        body = {"experiment": {"experiment_id": "3"}} if known else {"error_code": "RESOURCE_DOES_NOT_EXIST"}
        self.send_response(200 if known else 404)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_mlflow() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), FakeMlflow)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_experiment_id_is_asked_of_the_server(fake_mlflow: str) -> None:
    assert ui.experiment_id(fake_mlflow, "digits-mlp") == "3"
    assert ui.experiment_id(fake_mlflow, "other") is None


def test_an_http_tracking_uri_is_not_served_again(
    fake_mlflow: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fake_mlflow)
    monkeypatch.setenv("PIPELINE_HOME", str(tmp_path))
    assert cli.main(["ui", "--study", "digits-mlp", "--params", str(tmp_path / "none.yaml")]) == 0
    assert f"{fake_mlflow}/#/experiments/3/runs?workflowType=machine_learning" in capsys.readouterr().out


# --- end to end: a real study, its quiet terminal, its runs in the UI ------------------------------


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", *console.QUIET_ENV)}
    return env | {"PYTHONPATH": str(REPO), "PIPELINE_HOME": str(root), "OPENBLAS_NUM_THREADS": "1"}


def _pipeline(root: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *argv],
        cwd=root,
        env=_env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def study_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """prepare, split, tune (3 trials) and train with tracking on a fresh store; their output."""
    root = tmp_path_factory.mktemp("study-home")
    (root / "data" / "raw").mkdir(parents=True)
    write_params(root, {"train": {"epochs": 5}, "tune": {"n_trials": 3, "startup_trials": 2}})
    outputs = {}
    for stage in ("prepare", "split", "tune", "train"):
        done = _pipeline(root, stage)
        assert done.returncode == 0, done.stdout
        outputs[stage] = done.stdout
    return {"root": root, "outputs": outputs}


@pytest.mark.slow
def test_tune_and_train_with_tracking_print_no_third_party_lines(study_home: dict) -> None:
    outputs = study_home["outputs"]
    assert "[3/3] trial" in outputs["tune"] and "model registered as" in outputs["train"]
    for stage, text in outputs.items():
        noisy = [line for line in text.splitlines() if NOISE.search(line)]
        assert not noisy, f"{stage}: {noisy}"
    # The noise is real: --verbose shows MLflow's artifact progress bars again.
    verbose = _pipeline(study_home["root"], "train", "--verbose")  # accepted after the command too
    assert verbose.returncode == 0 and "it/s" in verbose.stdout, verbose.stdout


class Ui:
    """``pipeline ui`` as a user starts it, its output read line by line as it comes."""

    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "ui"],
            cwd=root,
            env=_env(root),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches the ui process; here the test sends it
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, f"pipeline ui ended before printing {pattern!r}:\n" + "\n".join(self.seen)
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=90)
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.stop(signal.SIGTERM)


def _servers_on(port: int) -> list[str]:
    """Command lines of running (not zombie) processes started with ``--port <port>``."""
    return [c for c in _processes() if re.search(rf"--port {port}\b", c)]


def _processes() -> list[str]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port`` (IPv4 as dotted quads, IPv6 as hex)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]) if len(address) == 8 else address)
    return found


@pytest.mark.slow
def test_pipeline_ui_lists_the_study_trials_on_localhost_and_exits_0_on_ctrl_c(
    study_home: dict, tmp_path: Path
) -> None:
    server = Ui(study_home["root"])
    try:
        url = server.wait_for(r"runs of study '[^']+': (\S+)").group(1)
        base = re.match(r"http://127\.0\.0\.1:(\d+)", url)
        assert base, url
        port = int(base.group(1))
        assert _listening(port) == ["127.0.0.1"]  # never 0.0.0.0, nor IPv6
        with Browser(tmp_path / "screenshots", timeout=120) as browser:
            page = browser.page()
            page.open(url)
            expand = "[role=row] button[data-component-id*=runnamecellrenderer]"  # the sweep run's "+" toggle
            page.wait_for(f"document.querySelector({json.dumps(expand)})", 90000)
            page.evaluate(f"document.querySelector({json.dumps(expand)}).click()")
            names = page.wait_for(
                "['trial-0', 'trial-1', 'trial-2'].every(n => document.body.innerText.includes(n))"
                " && Array.from(document.querySelectorAll('[role=row] a')).map(a => a.textContent.trim())",
                60000,
            )
            shot = page.screenshot("mlflow-runs")
            assert {"trial-0", "trial-1", "trial-2"} <= set(names) and any(n.startswith("sweep-") for n in names)
            rows = page.boxes("[role=row]")
            assert sum(shot.ink(box, background=(255, 255, 255))[0] for box in rows) > 1000, shot.path
            assert page.requests_leaving([base.group(0)]) == []
        assert server.stop(signal.SIGINT) == 0, "\n".join(server.seen)
    finally:
        server.kill()
    assert server.seen[-1] == "ui: stopped" and not any("Traceback" in line for line in server.seen), server.seen
    assert _servers_on(port) == []


@pytest.mark.slow
def test_pipeline_ui_stops_on_sigterm_while_the_server_starts(study_home: dict) -> None:
    server = Ui(study_home["root"])
    try:
        deadline = time.monotonic() + 60
        started: list[str] = []
        while not started and time.monotonic() < deadline:  # no event says a process was created: poll
            started = [c for c in _mlflow_servers() if str(study_home["root"]) in c]
            time.sleep(0.1)
        assert started, "mlflow server did not start"
        port = int(re.search(r"--port (\d+)", started[0]).group(1))
        assert server.stop(signal.SIGTERM) == 0, "\n".join(server.seen)
    finally:
        server.kill()
    assert server.seen[-1] == "ui: stopped" and not any("Traceback" in line for line in server.seen), server.seen
    assert _servers_on(port) == []


def _mlflow_servers() -> list[str]:
    return [c for c in _processes() if re.search(r"mlflow server ", c)]
