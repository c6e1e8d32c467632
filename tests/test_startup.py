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
