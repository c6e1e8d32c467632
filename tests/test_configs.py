"""Every YAML in conf/ instantiates into the classes it names."""

from pathlib import Path

import pytest
import torch

from marl_lightning import IPPO, MAPPO, RolloutDataModule
from marl_lightning.cli import MarlCLI
from tests.conftest import CONF

# conf/trainer.yaml is a default config file, read before every other (tested below), not an algorithm.
CONFIGS = sorted(p for p in CONF.glob("*.yaml") if p.name != "trainer.yaml")
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


def test_trainer_settings_come_from_the_one_default_file(in_tmp):
    cli = MarlCLI(args=["--config", str(CONF / "ippo.yaml")], run=False)
    assert cli.trainer.val_check_interval == 20 and cli.trainer.log_every_n_steps == 1
    ours = [type(cb).__name__ for cb in cli.trainer.callbacks if type(cb).__module__.startswith("callbacks")]
    assert ours == ["TrustRegionMonitor", "IterationCheckpoint"]
    assert type(cli.trainer.logger).__module__ == "marl_lightning.tracking.loggers"
    assert cli.datamodule.env_factory.scenario_kwargs["lidar_range"] == 0.35  # conf/env/navigation.yaml
    # and nothing else repeats them: no algorithm file sets a trainer loop setting or a task
    for config in CONFIGS:
        text = config.read_text()
        assert "max_epochs" not in text and "val_check_interval" not in text, config.name
        if config.name != "seqppo_pessimistic.yaml":
            assert "data:" not in text, config.name


def test_print_config_prints_the_whole_resolved_config(in_tmp):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "marl_lightning", "fit", "--config", str(CONF / "mappo.yaml"),
         "--print_config"],
        capture_output=True, text=True, check=True, cwd=in_tmp,
    ).stdout
    for text in ("class_path: marl_lightning.MAPPO", "val_check_interval: 20", "tracking_uri: sqlite:///mlflow.db",
                 "callbacks.IterationCheckpoint", "scenario: navigation", "lidar_range: 0.35",
                 "total_frames: 600000", "frames_per_batch: 6000", "activation: tanh"):
        assert text in out, text


PAPER_METHODS = ["dpo.yaml", "dpo_no_sqrt.yaml", "dpo_no_kl.yaml", "ippo.yaml", "ippo_kl.yaml"]


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_dpo_paper_settings_compose_with_every_method(method, in_tmp):
    cli = MarlCLI(args=["--config", str(CONF / method), "--config", str(CONF / "env" / "simple_spread.yaml"),
                        "--config", str(CONF / "paper" / "dpo_settings.yaml")], run=False)
    hp = cli.model.hparams
    assert list(hp.actor_cells) == [128, 128, 128] and list(hp.critic_cells) == [128, 128, 128]
    assert (hp.lr, hp.num_epochs, hp.share_actor_params, hp.share_critic_params) == (5e-4, 15, False, False)
    linear = [m for m in cli.model.actor.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 4  # 3 hidden layers of 128, then the output layer
    assert any(isinstance(m, torch.nn.ReLU) for m in cli.model.actor.modules())
    assert any(isinstance(m, torch.nn.ReLU) for m in cli.model.critic.modules())
    assert not any(isinstance(m, torch.nn.Tanh) for m in cli.model.critic.modules())


GPU_CONFIGS = sorted((CONF / "gpu").glob("*.yaml"))


@pytest.mark.parametrize("gpu_config", GPU_CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("config", ROLLOUT_CONFIGS, ids=lambda p: p.name)
def test_gpu_config_composes_with_every_algorithm(config: Path, gpu_config: Path, in_tmp):
    # (instantiated for the CPU here; the GPU run is benchmarks/gpu_check.sh)
    cli = MarlCLI(args=["--config", str(config), "--config", str(gpu_config), "--trainer.accelerator", "cpu"],
                  run=False)
    envs = int(gpu_config.stem.split("_")[1])
    assert cli.datamodule.num_envs == envs and cli.datamodule.steps_per_env == 100
    assert cli.model.hparams.minibatch_size * 10 == cli.datamodule.frames_per_batch
    assert cli.model.hparams.num_epochs == 4
    assert cli.model.total_frames == 50 * cli.datamodule.frames_per_batch
