"""This checkout as a commit of it would hold it, copied into a new git repository.

For the tests and benchmarks that run ``dvc repro`` in a scratch repository (``.ci/run`` makes its
copy the same way): the tracked files and the untracked ones git does not ignore, so outputs,
studies and MLflow stores stay behind.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIT = ("git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false")


def copy_checkout(dest: Path, env: Mapping[str, str] | None = None, *, commit: bool = True) -> Path:
    """Copy the checkout's files under ``dest`` and (``commit``) commit them in a new repository there."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():  # a deleted file is still listed until committed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    if commit:
        for argv in (("init", "-q"), ("add", "-A"), ("commit", "-qm", "scratch copy of the checkout")):
            subprocess.run([*GIT, *argv], cwd=dest, env=env, check=True, capture_output=True)
    return dest
