"""Scale: `dvc repro` on the synthetic source at M x 784, 2 workers: seconds and memory per stage and process.

    .venv/bin/python bench/bench_scale.py --m 1000000     # the scale run: 1,000,000 x 784 (3.1 GB float32)
    .venv/bin/python bench/bench_scale.py --m 100000      # a quick one
    .venv/bin/python bench/bench_scale.py --fits 16       # the largest data set the pipeline admits on 16 GiB

The run happens in a scratch copy of the repository (its tracked and untracked, not ignored files,
in a fresh git repository), so the workspace's outputs, study and MLflow store are never touched.
params.yaml there is the workspace's with: ``data.source: synthetic`` at M examples of 28x28x1,
10 classes, ``--label-noise`` and ``--separation`` (0.12: the classes overlap, so the study has
something to find; ``report.human_error`` is set to the Bayes error they make), ``tune``
with 2 workers and ``--trials`` trials of ``--epochs`` epochs, no pruner, ``train.epochs`` the same,
and the report without the stability check and with ``--fractions`` as learning-curve fractions.
Then one ``dvc repro`` runs every stage, as a user would.

Memory is sampled every ``--interval`` seconds over the whole process tree of ``dvc repro``: each
process's resident set (VmRSS, with its anonymous part RssAnon) from /proc/<pid>/status, and its
proportional set (Pss) from /proc/<pid>/smaps_rollup in passes spaced to cost the sampler at most
``--pss-share`` of one core (3%), so every PSS number is the max over those passes (``Sampler``).
Reading smaps_rollup at every sample cost about 130 ms of CPU per sample at 1,000,000 rows (it
walks the page tables of every process mapping the 3 GB split), most of a core, and slowed the 2
workers it measured on 2 cores by 1.3-1.4x. RSS counts every mapped page of the split in
every process that maps it, so 2 workers mapping a 3 GB split show 6 GB of RSS for 3 GB of memory;
PSS shares each page among the processes that map it, so the sum of PSS over processes is the
honest total. A process belongs to the stage of its nearest ``python -m pipeline <stage>``
ancestor; a stage's wall seconds run from that process's start (its /proc start time) to the
first sample that misses it. The goal: the peak over time of the summed PSS (dvc included) at most
1.5 x the float32 data size + 1 GiB.

Seconds per epoch: each COMPLETE trial's MLflow ``train_seconds`` (the update loops, the health
numbers included, as ``EpochLog.seconds``) over its epochs, against two references timed here
afterwards on a slice of the same training rows, with the trial's network, batch size and BLAS
threads, scaled to the whole training split's steps: ``core``, ``pipeline.nn.fit`` itself with the
trial's options (optimizer, dropout, L2) for 2 epochs, their mean ``EpochLog.seconds``; and ``floor``,
``bench_core.time_floor`` (the matrix products of a training step only). Goal: the trial at most
1.2x the reference.

Progress goes to stderr, the Markdown report to stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from pipeline.config import load_params, params_from_dict  # noqa: E402
from pipeline.data import memory  # noqa: E402
from tests.checkout import copy_checkout  # noqa: E402

STAGES = ("prepare", "split", "tune", "train", "evaluate", "report")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the scratch repository ---------------------------------------------------------------------------


def bayes_error(args: argparse.Namespace, seed: int = 0) -> float:
    """The synthetic data's Bayes error as prepare records it (``report.human_error`` is set to it)."""
    from pipeline.config import DataParams, SyntheticParams
    from pipeline.data.sources import load_dataset
    from pipeline.stages.prepare import synthetic_meta

    spec = SyntheticParams(
        m=args.m,
        height=28,
        width=28,
        channels=1,
        n_classes=10,
        label_noise=args.label_noise,
        separation=args.separation,
    )
    images = load_dataset(DataParams(source="synthetic", synthetic=spec), seed, ROOT).images
    return synthetic_meta(spec, 28 * 28, images)["bayes_error"]


def scale_params(base: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """params.yaml's content for the scale run (see the module docstring)."""
    raw = json.loads(json.dumps(base))
    raw["data"]["source"] = "synthetic"
    raw["data"]["synthetic"] = {
        "m": args.m,
        "height": 28,
        "width": 28,
        "channels": 1,
        "n_classes": 10,
        "label_noise": args.label_noise,
        "separation": args.separation,
    }
    raw["tune"].update({"n_trials": args.trials, "n_workers": args.workers, "pruner": "none"})
    raw["train"].update({"epochs": args.epochs})
    raw["report"].update(
        {
            "human_error": bayes_error(args, raw.get("seed", 0)),
            "stability_seeds": 0,
            "learning_curve_fractions": args.fractions,
        }
    )
    return raw


def bench_env(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PIPELINE_HOME", "PYTHONPATH")}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # dvc and python
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
    }
    return env


# --- sampling the process tree ------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # the process ended between listing and reading
        return ""


def _kib(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _boot_time() -> float:
    for line in _read("/proc/stat").splitlines():
        if line.startswith("btime"):
            return float(line.split()[1])
    return 0.0


BOOT = _boot_time()


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, start time as time.time()) of a process, or None if it is gone."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return int(fields[1]), BOOT + int(fields[19]) / CLK_TCK


def _role(pid: int) -> tuple[str | None, str]:
    """(the stage a ``python -m pipeline <stage>`` process runs, or None; a short name for the process)."""
    argv = _read(f"/proc/{pid}/cmdline").split("\0")
    if "-m" in argv:
        module = argv[argv.index("-m") + 1] if argv.index("-m") + 1 < len(argv) else ""
        if module == "pipeline" and len(argv) > argv.index("-m") + 2 and argv[argv.index("-m") + 2] in STAGES:
            stage = argv[argv.index("-m") + 2]
            return stage, f"{stage} (main)"
        if module == "pipeline.study.worker":
            index = argv[argv.index("--index") + 1] if "--index" in argv else "?"
            return None, f"worker {index}"
    if any("multiprocessing" in a for a in argv):
        return None, "pool worker"
    name = Path(argv[0]).name if argv and argv[0] else "?"
    if name.startswith("python") and len(argv) > 1:
        name = Path(argv[1]).name  # dvc runs as `python .../dvc`
    return None, name


@dataclass
class Proc:
    pid: int
    stage: str
    role: str
    peak_rss: int = 0
    peak_anon: int = 0
    peak_pss: int = 0
    cpu: float = 0.0  # CPU seconds, the last seen


@dataclass
class StageMemory:
    start: float = math.inf
    end: float = 0.0
    peak_pss: int = 0  # of the sum over its processes, at one time
    peak_rss: int = 0
    pids: set[int] = field(default_factory=set)
    busy: list[float] = field(default_factory=list)  # the machine's busy CPU seconds at each sample
    mine: list[float] = field(default_factory=list)  # the sampler's own CPU seconds at the same samples


def busy_seconds() -> float:
    """CPU seconds every process on the machine used so far (all cores), from /proc/stat."""
    fields = [int(v) for v in _read("/proc/stat").splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def _cpu(pid: int) -> float:
    """CPU seconds a process used (user + system), 0 if it is gone."""
    text = _read(f"/proc/{pid}/stat")
    if not text:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sampler:
    """Samples the memory of every process under ``root`` every ``interval`` seconds, in a thread.

    RSS comes from /proc/<pid>/status at every sample (counters: cheap). PSS comes from
    /proc/<pid>/smaps_rollup, which walks the process's page tables under its mmap lock: about
    60 ms of CPU for a process with 3 GB of the split mapped, so reading it every 0.2 s for three
    such processes kept most of a core busy and slowed the trials it measured (2 workers on 2
    cores). So PSS is read in passes spaced to cost at most ``pss_share`` of one core: a pass that
    took d seconds is followed by the next one no sooner than d / pss_share seconds after it began
    (at 1,000,000 rows about every 4 s with 3 processes mapping the split, 2 s with one). Every PSS
    peak (per process, per stage, in all) is the max over the passes, exact at each pass; a peak
    shorter than the spacing can fall between two passes (a stage with no pass shows none). An
    estimate carried between passes was tried and dropped: two workers growing their share of the
    same pages counted them twice until the next pass (5.3 GiB for 3.1 GiB).
    """

    def __init__(self, root: int, interval: float, pss_share: float = 0.03) -> None:
        self.root, self.interval, self.pss_share = root, interval, pss_share
        self.procs: dict[int, Proc] = {}
        self.stages: dict[str, StageMemory] = {}
        self.peak_pss = self.peak_rss = 0
        self.samples = self.pss_passes = 0
        self.cpu = 0.0  # the sampler thread's own CPU seconds
        self._pss_due = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._known: dict[int, tuple[str | None, str]] = {}

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> dict[int, int]:
        parents: dict[int, int] = {}
        starts: dict[int, float] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _stat(int(entry))
                if st is not None:
                    parents[int(entry)], starts[int(entry)] = st
        self._starts = starts
        tree, frontier = {self.root: 0}, [self.root]
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        while frontier:
            pid = frontier.pop()
            for child in children.get(pid, []):
                tree[child] = pid
                frontier.append(child)
        return tree

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.time()
            self.sample(began)
            self.cpu = time.thread_time()
            self._stop.wait(max(0.0, self.interval - (time.time() - began)))

    def sample(self, now: float) -> None:
        busy, mine = busy_seconds(), time.thread_time()
        tree = self._tree()
        pss_pass = time.time() >= self._pss_due
        pss_seconds = 0.0
        stage_of: dict[int, str] = {}
        totals: dict[str, list[int]] = {}
        all_pss = all_rss = 0
        for pid in sorted(tree, key=lambda p: self._starts.get(p, 0.0)):  # parents start before children
            if pid not in self._known:
                self._known[pid] = _role(pid)
            stage, role = self._known[pid]
            stage = stage or stage_of.get(tree[pid], "dvc")
            stage_of[pid] = stage
            status = _read(f"/proc/{pid}/status")
            if not status:
                continue
            rss, anon = _kib(status, "VmRSS"), _kib(status, "RssAnon")
            pss = 0
            if pss_pass:
                began = time.perf_counter()
                pss = _kib(_read(f"/proc/{pid}/smaps_rollup"), "Pss") or rss
                pss_seconds += time.perf_counter() - began
            p = self.procs.setdefault(pid, Proc(pid, stage, role))
            p.peak_rss, p.peak_anon, p.peak_pss = max(p.peak_rss, rss), max(p.peak_anon, anon), max(p.peak_pss, pss)
            p.cpu = max(p.cpu, _cpu(pid))
            t = totals.setdefault(stage, [0, 0])
            t[0] += pss
            t[1] += rss
            all_pss += pss
            all_rss += rss
            if stage != "dvc":
                s = self.stages.setdefault(stage, StageMemory())
                s.pids.add(pid)
                if role.endswith("(main)"):
                    s.start = min(s.start, self._starts.get(pid, now))
                s.end = max(s.end, now + self.interval / 2)  # last seen; the end is half a period later, on average
                if not s.busy or s.busy[-1] != busy:
                    s.busy.append(busy)
                    s.mine.append(mine)
        for stage, (pss, rss) in totals.items():  # pss is 0 outside a pass
            if stage in self.stages:
                self.stages[stage].peak_pss = max(self.stages[stage].peak_pss, pss)
                self.stages[stage].peak_rss = max(self.stages[stage].peak_rss, rss)
        self.peak_pss, self.peak_rss = max(self.peak_pss, all_pss), max(self.peak_rss, all_rss)
        self.samples += 1
        if pss_pass:
            self.pss_passes += 1
            self._pss_due = now + max(self.interval, pss_seconds / self.pss_share)

    def others(self, stage: str) -> float:
        """Cores that processes outside the tree and the sampler kept busy while ``stage`` ran (an estimate)."""
        s = self.stages[stage]
        if len(s.busy) < 2 or s.end <= s.start:
            return float("nan")
        own = sum(self.procs[p].cpu for p in s.pids)
        return max(0.0, (s.busy[-1] - s.busy[0] - own - self.mine(stage) * (s.end - s.start)) / (s.end - s.start))

    def mine(self, stage: str) -> float:
        """Cores the sampler itself kept busy while ``stage`` ran."""
        s = self.stages[stage]
        if len(s.mine) < 2 or s.end <= s.start:
            return 0.0
        return (s.mine[-1] - s.mine[0]) / (s.end - s.start)


# --- seconds per epoch --------------------------------------------------------------------------------


def trial_epochs(repo: Path) -> list[dict[str, Any]]:
    """Each COMPLETE trial of the study: its values, BLAS threads, epochs and MLflow train_seconds."""
    import optuna
    from mlflow import MlflowClient

    where = json.loads((repo / "studies/where.json").read_text())
    study = optuna.load_study(study_name=where["study_name"], storage=f"sqlite:///{repo / 'studies/optuna.db'}")
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        a = t.user_attrs
        metrics = client.get_run(a["mlflow_run_id"]).data.metrics if a.get("mlflow_run_id") else {}
        out.append(
            {
                "number": t.number,
                "values": a["values"],
                "threads": int(a["blas_threads"]),
                "epochs": int(a["epochs_trained"]),
                "dev_error": t.value,
                "train_seconds": metrics.get("train_seconds", float("nan")),
            }
        )
    return out


def reference_epochs(repo: Path, trial: dict[str, Any], slice_m: int) -> tuple[float, float]:
    """(core, floor) seconds per epoch of the trial's network on the whole training split, from a slice."""
    import bench_core
    from threadpoolctl import threadpool_limits

    from pipeline import nn
    from pipeline.data.store import load_split
    from pipeline.study.space import apply_params, architecture, fit_options

    os.chdir(repo)
    params = load_params("params.yaml")
    config = apply_params(params, trial["values"])
    X, y = load_split("train", repo)
    m_train = len(y)
    Xs, ys = np.ascontiguousarray(X[:slice_m]), np.asarray(y[:slice_m])
    arch = architecture(config.model, X.shape[1], 10)
    hp = fit_options(config.train)
    hp = type(hp)(**{**hp.__dict__, "epochs": 2, "patience": 0})
    b = hp.batch_size or len(ys)
    scale = math.ceil(m_train / b) / math.ceil(len(ys) / b)
    with threadpool_limits(limits=trial["threads"]):
        logs: list[float] = []
        nn.fit(Xs.T, ys, arch, hp, seed=0, callbacks=[lambda e: logs.append(e.seconds)])
        core = statistics.mean(logs) * scale  # both epochs, as the trial's train_seconds / epochs
        w = bench_core.Workload("slice", arch.layer_dims, len(ys), b, hp.learning_rate, 1)
        floor, _ = bench_core.time_floor(w, Xs, ys, arch.dtype)
    return core, floor * scale


# --- the report ---------------------------------------------------------------------------------------


def stage_estimates(repo: Path, params: Any) -> dict[str, int]:
    """The working set each stage checked before it started (``pipeline.data.memory``), in bytes."""
    from pipeline.report.seeds import free_cores
    from pipeline.study.space import apply_params

    sizes = json.loads((repo / "reports/split.json").read_text())["sizes"]
    m_train, m_dev, n_x = sizes["train"], sizes["dev"], 784
    best = json.loads((repo / "reports/study/best_params.json").read_text())
    final = apply_params(params, best["params"])  # the train stage's network: the best trial's
    workers = memory.stability_workers(params, free_cores())
    return {
        "prepare": memory.split_set(sum(sizes.values()), n_x).total,
        "split": memory.split_set(sum(sizes.values()), n_x).total,
        "tune": memory.tune_set(params, n_x, 10, m_train, m_dev).total,
        "train": memory.fit_set(final, n_x, 10, m_train, m_dev).total,
        "report": memory.report_set(final, params, n_x, 10, m_train, m_dev, workers).total,
    }


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-scale-", dir=args.tmp) as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        env = bench_env(repo)
        copy_checkout(repo, env)
        raw = scale_params(yaml.safe_load((repo / "params.yaml").read_text()), args)
        (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        params = params_from_dict(raw)
        log(f"dvc repro at m={args.m:,} in {repo} ...")
        started = time.time()
        proc = subprocess.Popen(
            ["dvc", "repro"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        with Sampler(proc.pid, args.interval, args.pss_share) as sampler:
            output, _ = proc.communicate()
        wall = time.time() - started
        if proc.returncode != 0:
            log(output)
            log(f"dvc repro failed with exit code {proc.returncode}")
            return proc.returncode
        log(f"dvc repro: {wall:.1f} s, {sampler.samples} samples; timing the references ...")
        trials = trial_epochs(repo)
        for t in trials:
            t["core"], t["floor"] = reference_epochs(repo, t, args.slice)
        os.chdir(ROOT)
        estimates = stage_estimates(repo, params)
        meta = json.loads((repo / "data/prepared/meta.json").read_text())
        train = json.loads((repo / "reports/train.json").read_text())
        metrics = json.loads((repo / "reports/metrics.json").read_text())
        print_report(args, params, sampler, wall, trials, meta, train, metrics, estimates)
    return 0


def print_report(
    args: argparse.Namespace,
    params: Any,
    sampler: Sampler,
    wall: float,
    trials: list[dict[str, Any]],
    meta: dict[str, Any],
    train: dict[str, Any],
    metrics: dict[str, Any],
    estimates: dict[str, int],
) -> None:
    m, n_x = meta["n_examples"], meta["n_features"]
    data = m * n_x * 4
    goal = 1.5 * data + 2**30
    print(f"# bench_scale: dvc repro on synthetic {m:,} x {n_x}, {args.workers} workers\n")
    argv = " ".join(sys.argv[1:])
    print(f"Command: `.venv/bin/python bench/bench_scale.py {argv}`  ")
    print(
        f"Ended {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores, "
        f"MemTotal {gib(_meminfo('MemTotal'))}; load average at the end {os.getloadavg()[0]:.2f}.  "
    )
    print(
        f"Settings: label_noise {args.label_noise}, separation {args.separation} (Bayes error "
        f"{meta['synthetic']['bayes_error']}), {args.trials} trials x {args.epochs} epochs, "
        f"no pruner, train {args.epochs} epochs, report without stability, learning-curve fractions "
        f"{args.fractions}; RSS sampled every {args.interval} s ({sampler.samples} samples), PSS in "
        f"{sampler.pss_passes} passes spaced to cost at most {args.pss_share:.0%} of a core; the sampler's own "
        f"CPU: {sampler.cpu:.1f} s ({sampler.cpu / wall:.3f} of a core).\n"
    )
    print(f"float32 data: {gib(data)} ({m:,} x {n_x} x 4 bytes); goal for the peak total: {gib(goal)}.\n")
    print(
        "The stage's own estimate is the working set it compared with MemAvailable before starting "
        "(pipeline.data.memory; prepare checks the split's). Others' cores: CPU that processes outside "
        "`dvc repro` and the sampler used meanwhile; sampler's cores: what the sampler itself used.\n"
    )
    print(
        "| stage | wall s | processes | peak total PSS | peak total RSS | largest process RSS (anon) "
        "| the stage's own estimate | others' cores | sampler's cores |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for stage in STAGES:
        s = sampler.stages.get(stage)
        if s is None:
            print(f"| {stage} | (not seen) | | | | | | | |")
            continue
        procs = [sampler.procs[p] for p in s.pids]
        big = max(procs, key=lambda p: p.peak_rss)
        print(
            f"| {stage} | {s.end - s.start:.1f} | {len(procs)} | {gib(s.peak_pss) if s.peak_pss else '-'} | "
            f"{gib(s.peak_rss)} | "
            f"{gib(big.peak_rss)} ({gib(big.peak_anon)}) | {gib(estimates[stage]) if stage in estimates else '-'} | "
            f"{sampler.others(stage):.2f} | {sampler.mine(stage):.3f} |"
        )
    print(
        f"| **dvc repro** | **{wall:.1f}** | {len(sampler.procs)} | **{gib(sampler.peak_pss)}** | "
        f"{gib(sampler.peak_rss)} | | | | |"
    )
    ok = sampler.peak_pss <= goal
    print(
        f"\nPeak total PSS of the whole tree (dvc included): {gib(sampler.peak_pss)} = "
        f"{sampler.peak_pss / data:.2f}x the data; goal <= 1.5x + 1 GiB = {gib(goal)}: "
        f"{'met' if ok else 'NOT met'}. (Peak total RSS, shared pages counted per process: {gib(sampler.peak_rss)}.)\n"
    )
    print("Per process (peak over the run; RSS counts the mapped split pages it touched, PSS its share of them):\n")
    print("| stage | process | pid | peak RSS | of which anonymous | peak PSS |")
    print("|---|---|---:|---:|---:|---:|")
    for p in sorted(sampler.procs.values(), key=lambda p: (STAGES.index(p.stage) if p.stage in STAGES else -1, p.pid)):
        if p.peak_rss < 2**24:  # the shells and short helpers
            continue
        pss = gib(p.peak_pss) if p.peak_pss else "-"
        print(f"| {p.stage} | {p.role} | {p.pid} | {gib(p.peak_rss)} | {gib(p.peak_anon)} | {pss} |")
    errors = f"train {train['train_error']:.4f}, dev {metrics['dev_error']:.4f}, test {metrics['test_error']:.4f}"
    print(f"\nFinal model's errors: {errors} (the Bayes error is {meta['synthetic']['bayes_error']}).\n")
    print("Seconds per epoch of the study's trials (MLflow train_seconds / epochs) against the references")
    print(f"timed afterwards on {args.slice:,} training rows with the same network, batch and threads:\n")
    print(
        "| trial | network | batch | threads | dev error | tune s/epoch | core s/epoch | x core | floor s/epoch "
        "| x floor |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in trials:
        per = t["train_seconds"] / t["epochs"]
        values = t["values"]
        net = f"{values.get('n_layers')} x {values.get('n_units')}"
        batch = values.get("batch_size", params.train.batch_size)
        print(
            f"| {t['number']} | {net} | {batch} | {t['threads']} | {t['dev_error']:.4f} | {per:.2f} | "
            f"{t['core']:.2f} | {per / t['core']:.2f} | {t['floor']:.2f} | {per / t['floor']:.2f} |"
        )
    if trials:
        ratio = statistics.median(t["train_seconds"] / t["epochs"] / t["core"] for t in trials)
        print(f"\nMedian tune / core: {ratio:.2f}x (goal <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'}).")


def _meminfo(key: str) -> int:
    return _kib(_read("/proc/meminfo"), key)


def fits(args: argparse.Namespace) -> int:
    """The largest data set of 784 features (10 classes) whose every stage's estimate fits ``--fits`` GiB,
    under params.yaml as it is and under this benchmark's settings."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    available = int(args.fits * 2**30)
    for label, raw in (("params.yaml as it is", base), ("the scale run's settings", scale_params(base, args))):
        params = params_from_dict(raw)
        m = memory.largest_m(params, 784, 10, available, cores=os.cpu_count() or 1)
        print(
            f"On {args.fits:g} GiB available, {label} ({params.tune.n_workers} tune worker(s), learning-curve "
            f"fractions {list(params.report.learning_curve_fractions)}, stability seeds "
            f"{params.report.stability_seeds}, {os.cpu_count()} cores): at most {m:,} examples of 784 features "
            f"({gib(m * 784 * 4)} of float32 rows)."
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=1_000_000, help="examples of 28x28 (default 1,000,000)")
    parser.add_argument("--workers", type=int, default=2, help="tune.n_workers")
    parser.add_argument("--trials", type=int, default=4, help="tune.n_trials")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of every trial and of the train stage")
    parser.add_argument("--label-noise", type=float, default=0.1, help="data.synthetic.label_noise")
    parser.add_argument(
        "--separation", type=float, default=0.12, help="data.synthetic.separation (1: trivially separable)"
    )
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 1.0], help="learning-curve fractions")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between memory (RSS) samples")
    parser.add_argument(
        "--pss-share", type=float, default=0.03, help="the most of one core the PSS passes (smaps_rollup) may take"
    )
    parser.add_argument("--slice", type=int, default=20000, help="training rows the references are timed on")
    parser.add_argument("--tmp", help="folder for the scratch copy (default: the system's)")
    parser.add_argument("--fits", type=float, metavar="GIB", help="only print the largest m that fits GIB GiB")
    args = parser.parse_args()
    return fits(args) if args.fits else run(args)


if __name__ == "__main__":
    sys.exit(main())
