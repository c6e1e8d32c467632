"""Start-up: what the CLI imports before it knows what the run needs."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_the_cli_does_not_import_mlflow_until_a_store_is_opened():
    """MLflow (with pandas) takes about 1.4 s to import; a fit without a logger never needs it. The MLflow
    tests (``tests/test_cli_mlflow.py``) cover the runs that log."""
    probe = "import sys, marl_lightning.cli, marl_lightning.tracking.loggers; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False"


def test_the_top_level_help_lists_every_subcommand_without_importing_torch():
    """``python -m marl_lightning --help`` answers at once: it imports neither torch nor Lightning."""
    probe = (
        "import sys, runpy; sys.argv = ['marl_lightning', '--help']\n"
        "try:\n    runpy.run_module('marl_lightning', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'torch' in sys.modules, 'lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip().splitlines()[-1] == "exit 0 False False"
    for subcommand in ("fit", "validate", "test", "grid", "compare", "render", "replay"):
        assert f"\n  {subcommand} " in out.stdout
    bare = subprocess.run([sys.executable, "-m", "marl_lightning"], capture_output=True, text=True, cwd=REPO)
    assert bare.returncode == 2 and "subcommands:" in bare.stderr
