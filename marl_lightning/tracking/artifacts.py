"""``runs:/<run_id>/<path>`` in place of a local file: a run's config and checkpoint, read from MLflow.

``python -m marl_lightning test --config runs:/<id>/config.yaml --ckpt_path runs:/<id>/checkpoints/last.ckpt``
evaluates a policy from the tracking store alone (the SQLite default or a server with proxied artifacts).
The tracking URI is the one the command line names (``--trainer.logger.init_args.tracking_uri``), else
``MLFLOW_TRACKING_URI``, else the default of ``conf/trainer.yaml``.
"""

from __future__ import annotations

import os
import tempfile

import yaml

from marl_lightning.core.errors import ConfigError
from marl_lightning.core.paths import CONF

RUNS_SCHEME = "runs:/"
RESOLVED_OPTIONS = ("--config", "--ckpt_path")
TRACKING_URI_OPTION = "--trainer.logger.init_args.tracking_uri"
TRAINER_CONFIG = CONF / "trainer.yaml"


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the logger's ``tracking_uri`` in ``conf/trainer.yaml``."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    config = yaml.safe_load(TRAINER_CONFIG.read_text())
    return config["trainer"]["logger"]["init_args"]["tracking_uri"]


def _option_value(argv: list[str], option: str) -> str | None:
    value = None
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def download(uri: str, tracking_uri: str) -> str:
    """The local path of the artifact ``runs:/<run_id>/<path>`` (downloaded to a fresh temporary folder)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    destination = tempfile.mkdtemp(prefix="marl_lightning-artifact-")
    try:
        return mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=destination, tracking_uri=tracking_uri
        )
    except (MlflowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"cannot read {uri} from the MLflow tracking store {tracking_uri}: {first_line}. Check the "
            f"run id and the artifact path (the run's Artifacts tab in `mlflow ui` lists them), and that the "
            f"store is the one the run was logged to (set it with {TRACKING_URI_OPTION} or "
            "MLFLOW_TRACKING_URI)."
        ) from None


def resolve_mlflow_arguments(argv: list[str]) -> list[str]:
    """``argv`` with every ``--config``/``--ckpt_path`` value ``runs:/...`` replaced by a local copy."""
    tracking_uri = _option_value(argv, TRACKING_URI_OPTION)
    resolved = list(argv)
    for i, arg in enumerate(argv):
        option, _, inline = arg.partition("=")
        if option not in RESOLVED_OPTIONS:
            continue
        if inline.startswith(RUNS_SCHEME):
            resolved[i] = f"{option}={download(inline, tracking_uri or default_tracking_uri())}"
        elif not inline and i + 1 < len(argv) and argv[i + 1].startswith(RUNS_SCHEME):
            resolved[i + 1] = download(argv[i + 1], tracking_uri or default_tracking_uri())
    return resolved
