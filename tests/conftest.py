"""Synthetic-batch factories (no simulator) and small-run helpers shared by the tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from marl_lightning.core import keys
from marl_lightning.envs import EnvSpec
from marl_lightning.models.activations import sigmoid_form_pays

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each of pytest-xdist's workers (one per core, `-n auto`) and the fits it starts use one torch thread:
    # two processes with a thread per core each would slow each other many times over.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
CONF = REPO / "conf"
# The hidden layers' tanh kernel is chosen once per process by timing (models.activations); chosen here, it
# is exported to every fit this worker starts, so processes compared bit for bit compute alike.
sigmoid_form_pays()

# Small but real runs: 10 envs x 20 steps per iteration, episodes of 20 steps.
SMALL_RUN_ARGS = [
    "--data.num_envs",
    "10",
    "--data.frames_per_batch",
    "200",
    "--data.env.init_args.max_steps",
    "20",
    "--data.eval_episodes",
    "4",
    "--model.init_args.minibatch_size",
    "100",
    "--model.init_args.num_epochs",
    "2",
    "--model.init_args.actor_cells",
    "[32, 32]",
    "--model.init_args.critic_cells",
    "[32, 32]",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def checkpoint_iterations(path: Path) -> int:
    """The iterations a checkpoint holds (``IterationCheckpoint`` renames a complete file into place, so one
    that exists can be read)."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["state_dict"]["iterations"])


def cli_args(subcommand: str, *extra: str, config: str = "mappo.yaml", small: bool = True) -> list[str]:
    """Arguments of ``marl_lightning <subcommand> --config conf/<config>`` at the small test sizes."""
    return [subcommand, "--config", str(CONF / config), *(SMALL_RUN_ARGS if small else []), *extra]


def cli_command(subcommand: str, *extra: str, config: str = "mappo.yaml", small: bool = True) -> list[str]:
    """The same as a process: ``python -m marl_lightning ...``."""
    return [sys.executable, "-m", "marl_lightning", *cli_args(subcommand, *extra, config=config, small=small)]


def only_run(store: Path):
    """(client, run) of the one MLflow run in the SQLite store ``store`` (fails if there are more or none)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, run


def metric_history(client, run, name: str) -> list[tuple[int, float]]:
    """A run's metric ``name`` as (step, value) in logged order."""
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]


def make_spec(n_agents: int = 3, observation_dim: int = 5, continuous: bool = True) -> EnvSpec:
    return EnvSpec(
        n_agents=n_agents,
        observation_dim=observation_dim,
        action_dim=2 if continuous else 4,
        continuous=continuous,
        action_low=-1.0,
        action_high=1.0,
    )


def synthetic_batch(spec: EnvSpec, batch: int = 8, generator_seed: int = 0) -> TensorDict:
    """A minibatch [B, A] with observations, advantages and value targets drawn at random."""
    g = torch.Generator().manual_seed(generator_seed)
    a = spec.n_agents
    return TensorDict(
        {
            keys.OBSERVATION: torch.randn(batch, a, spec.observation_dim, generator=g),
            keys.ADVANTAGE: torch.randn(batch, a, 1, generator=g),
            keys.VALUE_TARGET: torch.randn(batch, a, 1, generator=g),
        },
        batch_size=[batch, a],
    )


@pytest.fixture(autouse=True)
def no_tracking_uri_from_earlier_tests():
    """MLflow's ``set_tracking_uri`` (which Lightning's MLFlowLogger calls) exports ``MLFLOW_TRACKING_URI``;
    left set, it would send a later test's commands and subprocesses to an earlier test's store."""
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh directory (MLflow store, checkpoints) with the repo importable."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return tmp_path
