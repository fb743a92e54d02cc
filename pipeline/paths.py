"""Where the workspace is: the folder that holds the shared study storage and MLflow store.

Stdlib only, so that opening a study does not import mlflow (about 1.5 s).
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root(start: str | Path | None = None) -> Path:
    """PIPELINE_HOME, else DVC_ROOT, else the nearest folder upward holding .dvc or .git.

    DVC sets DVC_ROOT for every stage command; for a queued experiment it names the workspace,
    while the command runs in a temporary copy under ``<workspace>/.dvc/tmp/exps``.
    """
    for var in ("PIPELINE_HOME", "DVC_ROOT"):
        if os.environ.get(var):
            return _outside_exp_copy(Path(os.environ[var]).resolve())
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return _outside_exp_copy(folder)
    return here


def _outside_exp_copy(path: Path) -> Path:
    # A queued experiment runs in <workspace>/.dvc/tmp/exps/<tmp>: share the workspace's stores.
    parts = path.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return path
