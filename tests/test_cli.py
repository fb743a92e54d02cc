"""The command line lists every command; each command module plugs in the same way."""

import importlib
import subprocess
import sys

from pipeline.cli import COMMANDS


def test_help_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout


def test_every_command_module_has_configure_and_run() -> None:
    for name, (module_name, _) in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(module.configure) and callable(module.run), name
