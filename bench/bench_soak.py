"""Soak: 8 workers x 200 short trials on PostgreSQL, a random worker SIGKILLed every few seconds.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_soak.py [--workers 8] [--trials 200] [--kill-every 5]

A private PostgreSQL 15 cluster (initdb as the postgres user, as the test fixture does) holds the
study and the MLflow store (two databases). One launcher starts ``--workers`` worker processes;
every ``--kill-every`` seconds a random live worker (a launcher's worker process, or a joining
single-worker launcher) is SIGKILLed mid-trial and a joining ``pipeline sweep --resume --workers
1`` takes its place, so about ``--workers`` workers run all along. When the study reaches its cap
the killing stops, every process is waited for, and one last ``pipeline sweep --resume`` (nothing
to run) closes the parent runs that killed launchers left RUNNING.

Prints, as Markdown: the trials counted against the cap (exactly ``--trials``), duplicated trial
numbers, trials lost (a killed trial whose parameters were never retried), trials and runs left
RUNNING (all must be 0), MLflow runs per trial attempt, and the wall time. Exits 0 when all hold.
Trials are tiny (1 hidden layer of 4-8 units, 3 epochs, 300 examples): this measures the
machinery, not training.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import yaml  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from pipeline.study.storage import MAX_RETRIES  # noqa: E402

PG_BIN = Path("/usr/lib/postgresql/15/bin")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def as_postgres(*cmd: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A throw-away cluster on a free port (fsync off), with ``database()`` making fresh databases."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="soak-pg-"))
        self.folder.chmod(0o777)
        self.data, self.port = self.folder / "data", free_port()
        as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        log = str(self.folder / "server.log")
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}"

    def database(self) -> str:
        import psycopg2

        name = f"soak_{uuid.uuid4().hex[:10]}"
        conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        conn.close()
        return f"{self.url}/{name}"

    def stop(self) -> None:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def write_workspace(root: Path, trials: int, epochs: int) -> None:
    """Three Gaussian blobs (300 train, 60 dev, 16 features) and params for tiny trials."""
    rng = np.random.default_rng(0)
    split = root / "data" / "split"
    split.mkdir(parents=True)
    for part, m in (("train", 300), ("dev", 60)):
        y = rng.integers(0, 3, m)
        X = 1.5 * np.eye(3, 16)[y] + rng.normal(size=(m, 16))
        np.save(split / f"X_{part}.npy", X.astype(np.float32))
        np.save(split / f"y_{part}.npy", y.astype(np.int64))
    normalizer = {"mode": "none", "pixel_range": 1.0, "mean": None, "std": None, "classes": ["a", "b", "c"]}
    (split / "normalizer.json").write_text(json.dumps(normalizer))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(epochs=epochs, batch_size=32)
    params["tune"].update(n_trials=trials, pruner="none", startup_trials=5, n_workers=1, storage=None)
    params["tune"]["space"].update(n_layers={"low": 1, "high": 1}, n_units={"low": 4, "high": 8})
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def mid_trial(study: optuna.Study, launchers: list[subprocess.Popen], pick: random.Random) -> int | None:
    """A random worker that is training a trial now (looked for up to 5 s), or None."""
    end = time.monotonic() + 5
    while time.monotonic() < end:
        # A worker: the first launcher's worker processes, or a joining launcher itself (it trains in-process).
        workers = set(children(launchers[0].pid)) | {p.pid for p in launchers[1:] if p.poll() is None}
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in running if "worker" in t.user_attrs}
        victims = sorted(workers & pids)
        if victims:
            return pick.choice(victims)
        time.sleep(0.1)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between two kills")
    parser.add_argument("--epochs", type=int, default=20, help="epochs a trial (20: about half a second)")
    parser.add_argument("--seed", type=int, default=0, help="which worker dies when")
    args = parser.parse_args()
    pick = random.Random(args.seed)
    pg = Postgres()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        write_workspace(work, args.trials, args.epochs)
        storage, mlflow_uri = pg.database(), pg.database()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PIPELINE_HOME": str(work),
            "MLFLOW_TRACKING_URI": mlflow_uri,
            "OPENBLAS_NUM_THREADS": "1",
        }
        # Heartbeat 2 s, grace 10 s: a worker starved of CPU on a loaded machine is not taken for dead.
        common = ["--storage", storage, "--heartbeat-interval", "2", "--grace-period", "10"]
        logs = open(work / "sweeps.log", "w")  # noqa: SIM115 -- the launchers' output, kept for a look afterwards

        def launch(*extra: str) -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "pipeline", "sweep", *common, *extra],
                cwd=work,
                env=env,
                stdout=logs,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        start = time.monotonic()
        launchers = [launch("--workers", str(args.workers))]
        study = None
        kills = joins = 0
        while True:
            time.sleep(args.kill_every)
            if study is None:
                with_tables = optuna.storages.RDBStorage(storage, skip_table_creation=True)
                names = [s.study_name for s in with_tables.get_all_studies()]
                study = optuna.load_study(study_name=names[0], storage=with_tables) if names else None
                if study is None:
                    continue
            if len(study.get_trials(deepcopy=False, states=COUNTED)) >= args.trials:
                break
            if all(p.poll() is not None for p in launchers):
                break  # every launcher ended (the cap was reached between two looks)
            victim = mid_trial(study, launchers, pick)
            if victim is not None:
                os.kill(victim, signal.SIGKILL)
                kills += 1
                launchers.append(launch("--resume", "--workers", "1"))  # keeps about --workers workers running
                joins += 1
        for p in launchers:
            p.wait(timeout=600)
        wall = time.monotonic() - start
        last = [sys.executable, "-m", "pipeline", "sweep", *common, "--resume"]  # nothing to run: closes dead parents
        closing = subprocess.run(last, cwd=work, env=env, capture_output=True, text=True)
        logs.close()
        return report(args, storage, mlflow_uri, wall, kills, joins, closing.returncode)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(
    args: argparse.Namespace, storage: str, mlflow_uri: str, wall: float, kills: int, joins: int, closing: int
) -> int:
    from pipeline import tracking

    rdb = optuna.storages.RDBStorage(storage, skip_table_creation=True)
    study = optuna.load_study(study_name=rdb.get_all_studies()[0].study_name, storage=rdb)
    trials = study.get_trials()
    counted = len([t for t in trials if t.state in COUNTED])
    numbers = Counter(t.number for t in trials)
    duplicated = sum(n - 1 for n in numbers.values() if n > 1)
    # A killed trial's retries all name the first attempt (system attribute failed_trial): a
    # configuration is lost when none of its attempts finished, none waits or runs, and it was
    # not an interrupted trial (those are replaced by a new configuration, not retried).
    attempts: dict[int, list] = {}
    for t in trials:
        attempts.setdefault(int(t.system_attrs.get("failed_trial", t.number)), []).append(t)
    unfinished = [
        group
        for group in attempts.values()
        if all(t.state == TrialState.FAIL for t in group) and group[0].user_attrs.get("cause") != "interrupted"
    ]
    # Killed on every one of its 1 + MAX_RETRIES attempts: given up by the documented policy, and
    # recorded as FAIL with each attempt; lost is a killed attempt nobody retried before that.
    given_up = [g for g in unfinished if len(g) > MAX_RETRIES]
    lost = [g for g in unfinished if len(g) <= MAX_RETRIES]
    waiting = len([t for t in trials if t.state == TrialState.WAITING])
    running_trials = len([t for t in trials if t.state == TrialState.RUNNING])
    client = tracking.MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(study.study_name).experiment_id
    runs, token = [], None
    while True:
        page = client.search_runs([experiment], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    trial_runs = [r for r in runs if r.info.run_name.startswith("trial-")]
    runs_of = Counter(int(r.data.tags["optuna.trial_number"]) for r in trial_runs)
    per_attempt = Counter(runs_of.get(t.number, 0) for t in trials)
    running_runs = len([r for r in runs if r.info.status == "RUNNING"])
    parents = Counter(r.info.status for r in runs if r.info.run_name.startswith("sweep-"))
    ok = counted == args.trials and not duplicated and not lost and not running_trials and not running_runs
    ok = ok and max(per_attempt) <= 1 and closing == 0
    every = f"a worker SIGKILLed mid-trial every {args.kill_every:g} s"
    print(f"## Soak: {args.workers} workers, cap {args.trials} trials, {every}, {args.epochs} epochs a trial\n")
    print("| measure | value |")
    print("| --- | --- |")
    print(f"| wall time | {wall:.0f} s |")
    print(f"| workers killed (SIGKILL) / joined | {kills} / {joins} |")
    print(f"| trials counted against the cap | {counted} (cap {args.trials}) |")
    print(f"| trial attempts (all states) | {len(trials)}: {dict(Counter(t.state.name for t in trials))} |")
    print(f"| duplicated trial numbers | {duplicated} |")
    print(f"| trials lost (killed, not retried although retries were left) | {len(lost)} |")
    print(f"| configurations given up (killed on all 1 + {MAX_RETRIES} attempts; FAIL, by policy) | {len(given_up)} |")
    print(f"| retries left WAITING (the cap was reached first) | {waiting} |")
    print(f"| trials left RUNNING | {running_trials} |")
    print(f"| MLflow runs left RUNNING (trials and parents) | {running_runs} |")
    shown = dict(sorted(per_attempt.items()))
    print(f"| MLflow runs per trial attempt | {shown} (0: killed before its run was created) |")
    print(f"| parent runs by status | {dict(parents)} |")
    print(f"\n{'all hold' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
