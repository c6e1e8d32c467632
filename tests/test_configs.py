"""Every YAML in conf/ instantiates into the classes it names."""

from pathlib import Path

import pytest

from marl_lightning import IPPO, MAPPO, RolloutDataModule
from marl_lightning.cli import MarlCLI
from tests.conftest import CONF

CONFIGS = sorted(CONF.glob("*.yaml"))
ENV_CONFIGS = sorted((CONF / "env").glob("*.yaml"))
# Algorithms that run on the rollout machinery, so every task file composes with them (the tabular
# seqppo_pessimistic.yaml names its own game; tests/test_pessimistic.py checks what it refuses).
ROLLOUT_CONFIGS = [p for p in CONFIGS if p.name != "seqppo_pessimistic.yaml"]
EXPECTED = {"mappo.yaml": MAPPO, "ippo.yaml": IPPO}


def test_there_are_configs():
    assert {p.name for p in CONFIGS} >= set(EXPECTED)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_instantiates(config: Path, in_tmp):
    cli = MarlCLI(args=["--config", str(config)], run=False)
    assert isinstance(cli.datamodule, RolloutDataModule)
    if config.name in EXPECTED:
        assert type(cli.model) is EXPECTED[config.name]
    assert cli.model.env_spec == cli.datamodule.env_spec
    assert cli.trainer.max_epochs == -1


def test_overrides_reach_the_objects(in_tmp):
    cli = MarlCLI(
        args=[
            "--config",
            str(CONF / "mappo.yaml"),
            "--model.clip_epsilon",
            "0.1",
            "--data.num_envs",
            "600",
            "--data.frames_per_batch",
            "60000",
            "--seed_everything",
            "3",
        ],
        run=False,
    )
    assert float(cli.model.loss_module.clip_epsilon) == pytest.approx(0.1)
    assert cli.datamodule.num_envs == 600
    assert cli.config["seed_everything"] == 3


@pytest.mark.parametrize("env_config", ENV_CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("config", ROLLOUT_CONFIGS, ids=lambda p: p.name)
def test_env_config_composes_with_every_algorithm(config: Path, env_config: Path, in_tmp):
    cli = MarlCLI(args=["--config", str(config), "--config", str(env_config)], run=False)
    assert cli.model.env_spec == cli.datamodule.env_spec
    assert cli.datamodule.env_spec.name == cli.datamodule.env_factory.name
