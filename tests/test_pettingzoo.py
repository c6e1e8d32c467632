"""PettingZoo parallel environments through TorchRL, in the one batch layout."""

from __future__ import annotations

import pytest
import torch
from torchrl.envs.utils import check_env_specs

from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs import PettingZoo
from tests.conftest import CONF, cli_args

pytestmark = pytest.mark.simulator
SPREAD = {"N": 5, "max_cycles": 25}


@pytest.mark.parametrize("continuous", [False, True])
def test_specs_and_layout(continuous):
    factory = PettingZoo("mpe2.simple_spread_v3", {**SPREAD, "continuous_actions": continuous})
    spec = factory.spec()
    assert (spec.n_agents, spec.observation_dim, spec.action_dim, spec.continuous) == (5, 30, 5, continuous)
    env = factory.make_transformed(3, "cpu", seed=0)
    check_env_specs(env)
    rollout = env.rollout(30, break_when_any_done=False)  # [3, 30]
    assert rollout[keys.OBSERVATION].shape == (3, 30, 5, 30)
    assert rollout[keys.nxt(keys.REWARD)].shape == (3, 30, 5, 1)
    done = rollout[keys.nxt(keys.ROOT_DONE)].squeeze(-1)  # [3, 30]
    assert done[:, 24].all() and not done[:, :24].any()  # max_cycles ends the episode (a truncation)
    assert not rollout[keys.nxt(keys.TERMINATED)].any()
    # each agent's episode return restarts with the episode
    episode = rollout[keys.nxt(keys.EPISODE_REWARD)][..., 0]  # [3, 30, 5]
    reward = rollout[keys.nxt(keys.REWARD)][..., 0]
    torch.testing.assert_close(episode[:, 24], reward[:, :25].sum(1))
    torch.testing.assert_close(episode[:, 25], reward[:, 25])


def test_seeded_copies_are_reproducible_and_distinct():
    factory = PettingZoo("mpe2.simple_spread_v3", SPREAD)
    first = factory.make(2, "cpu", seed=3).reset()[keys.OBSERVATION]
    again = factory.make(2, "cpu", seed=3).reset()[keys.OBSERVATION]
    torch.testing.assert_close(first, again)
    assert not torch.equal(first[0], first[1])


def test_agents_with_different_spaces_are_named():
    with pytest.raises(ConfigError, match="adversary_0|agent_0") as error:
        PettingZoo("mpe2.simple_adversary_v3", {})
    assert "observation space" in str(error.value)


def test_bad_names_and_kwargs():
    with pytest.raises(ConfigError, match="no_such_env"):
        PettingZoo("mpe2.no_such_env_v0")
    with pytest.raises(ConfigError, match="env_kwargs"):
        PettingZoo("mpe2.simple_spread_v3", {"no_such_kwarg": 1})


@pytest.mark.parametrize("algorithm", ["mappo.yaml", "ippo.yaml"])
@pytest.mark.parametrize("task", ["simple_spread.yaml", "simple_spread_continuous.yaml"])
def test_algorithms_train_two_iterations(algorithm, task, in_tmp):
    cli = MarlCLI(
        args=cli_args(
            "fit",
            "--config",
            str(CONF / "env" / task),
            "--data.num_envs",
            "8",
            "--data.frames_per_batch",
            "200",
            "--model.total_frames",
            "400",
            "--model.init_args.minibatch_size",
            "100",
            "--trainer.logger",
            "false",
            "--trainer.callbacks.init_args.dirpath",
            str(in_tmp / "ckpt"),
            config=algorithm,
        )
    )
    assert int(cli.model.iterations) == 2
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["loss/value"]) and torch.isfinite(metrics["train/return_mean"])
    assert metrics["eval/episodes"] == 4


@pytest.mark.parametrize(
    ("action", "observation", "named"),
    [
        ("multi_discrete", "vector", "MultiCategorical"),
        ("multi_binary", "vector", "Binary"),
        ("discrete", "image", r"\(4, 4, 3\) per agent"),
    ],
)
def test_unsupported_spaces_are_named(action, observation, named):
    with pytest.raises(ConfigError, match=named) as error:
        PettingZoo("tests.odd_spaces_env", {"action": action, "observation": observation}).spec()
    assert "odd_spaces_env" in str(error.value)


@pytest.mark.parametrize(("action", "continuous"), [("discrete", False), ("box", True)])
def test_supported_spaces_give_the_sizes(action, continuous):
    spec = PettingZoo("tests.odd_spaces_env", {"action": action}).spec()
    assert (spec.n_agents, spec.observation_dim, spec.action_dim, spec.continuous) == (
        2, 3, 3 if action == "discrete" else 2, continuous
    )


def test_an_algorithm_refuses_an_action_kind_it_cannot_train():
    from marl_lightning import MAPPO
    from tests.conftest import make_spec

    class DiscreteOnly(MAPPO):
        action_kinds = ("discrete",)

    DiscreteOnly(env_spec=make_spec(continuous=False))
    with pytest.raises(ConfigError, match="DiscreteOnly cannot handle the continuous actions"):
        DiscreteOnly(env_spec=make_spec(continuous=True))


@pytest.mark.parametrize("task", ["mpe2.simple_spread_v3", "tests.dying_agents_env"])
def test_the_forwarding_wrapper_steps_as_torchrls_own(task):
    """The adapter (``agents``/``agent_selection`` read from the PettingZoo env at once) changes no value:
    the same seeded rollout, action for action, as TorchRL's plain ``PettingZooWrapper``."""
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper

    from marl_lightning.envs.pettingzoo import (
        AttributeForwardingPettingZooWrapper,
        load_parallel_env_constructor,
    )

    dying = {"lifetimes": [2, 5, 8], "max_cycles": 8}
    kwargs = {**SPREAD, "continuous_actions": True} if task.startswith("mpe2") else dying
    options = {"group_map": None, "categorical_actions": True, "done_on_any": False,
               "use_mask": task.startswith("tests")}
    rollouts = []
    for wrapper in (PettingZooWrapper, AttributeForwardingPettingZooWrapper):
        raw = load_parallel_env_constructor(task)(**kwargs)
        env = wrapper(raw, **{**options, "group_map": {keys.GROUP: list(raw.possible_agents)}})
        env.set_seed(7)
        torch.manual_seed(0)
        rollouts.append(env.rollout(30, break_when_any_done=False))  # random actions from the spec
        if wrapper is AttributeForwardingPettingZooWrapper:
            assert env.agents == raw.agents
    plain, forwarded = rollouts
    assert set(plain.keys(True, True)) == set(forwarded.keys(True, True))
    for key in plain.keys(True, True):
        assert torch.equal(plain[key], forwarded[key]), key
    assert PettingZoo(task, kwargs, use_mask=options["use_mask"])._make_one("cpu").__class__ is (
        AttributeForwardingPettingZooWrapper
    )
