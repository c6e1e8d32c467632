"""``model.compile_networks``: the networks compiled by ``torch.compile`` compute what eager ones do (to
rounding), keep the checkpoint's keys, and a compiled fit trains as an eager one does. The compiled part of
TorchRL's ``MultiAgentMLP`` is chosen by an adapter (``models/compile.py``): compiled whole, a shared
network leaves meta-device parameters behind, which these tests would see."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from marl_lightning.algorithms import MAPPO
from marl_lightning.algorithms.update import total_loss
from marl_lightning.cli import MarlCLI
from marl_lightning.core.errors import ConfigError
from marl_lightning.models.activations import KERNEL_ENV, sigmoid_form_pays
from marl_lightning.models.compile import compile_networks
from tests.conftest import CONF, make_spec, synthetic_batch


@pytest.fixture
def sigmoid_form(monkeypatch):
    """The tanh through an autograd Function (the one that cannot be compiled under vmap)."""
    monkeypatch.setenv(KERNEL_ENV, "sigmoid")
    sigmoid_form_pays.cache_clear()
    yield
    sigmoid_form_pays.cache_clear()


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-agent"])
def test_compiled_networks_compute_the_eager_loss_and_gradients(shared, sigmoid_form):
    torch.manual_seed(0)
    spec = make_spec()
    module = MAPPO(env_spec=spec, actor_cells=[16], critic_cells=[16], share_actor_params=shared,
                   share_critic_params=shared)
    eager = copy.deepcopy(module)
    batch = synthetic_batch(spec, batch=32)
    with torch.no_grad():
        module.actor(batch)  # the collecting policy's action and log-prob
    assert compile_networks(module, "default") == 2  # actor and critic
    for m in (module, eager):
        total_loss(m.loss_module(batch.clone())).backward()
    reference = eager.loss_module(batch.clone())
    compiled_out = module.loss_module(batch.clone())
    for key in ("loss_objective", "loss_critic", "approx_kl"):
        torch.testing.assert_close(compiled_out[key], reference[key], rtol=1e-5, atol=1e-6, msg=key)
    for (name, p), q in zip(module.named_parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
    # What Lightning and checkpoints see is unchanged: the same keys, no meta tensors, .cpu() works.
    assert list(module.state_dict()) == list(eager.state_dict())
    assert not any(t.is_meta for t in (*module.parameters(), *module.state_dict().values()))
    module.cpu()
    eager.load_state_dict(module.state_dict())


def test_an_unknown_mode_is_refused_at_construction():
    with pytest.raises(ConfigError, match="must be one of off, default, got 'reduce-overhead'"):
        MAPPO(env_spec=make_spec(), compile_networks="reduce-overhead")
    assert compile_networks(MAPPO(env_spec=make_spec()), "off") == 0


def _fit(folder: Path, mode: str) -> MarlCLI:
    return MarlCLI(args=[
        "fit", "--config", str(CONF / "mappo.yaml"), "--config", str(CONF / "env" / "stochastic_game.yaml"),
        "--data.num_envs", "4", "--data.frames_per_batch", "40", "--data.eval_episodes", "2",
        "--model.init_args.minibatch_size", "20", "--model.init_args.num_epochs", "2",
        "--model.init_args.actor_cells", "[16]", "--model.init_args.critic_cells", "[16]",
        "--model.total_frames", "80", "--model.init_args.compile_networks", mode, "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.callbacks.init_args.dirpath", str(folder),
    ])


def test_a_compiled_fit_trains_as_an_eager_one_and_its_checkpoint_loads_eagerly(in_tmp):
    eager = _fit(in_tmp / "eager", "off").model
    compiled = _fit(in_tmp / "compiled", "default").model
    assert (eager.compiled_networks, compiled.compiled_networks) == (0, 2)
    assert int(compiled.iterations) == int(eager.iterations) == 2
    for (name, p), q in zip(compiled.state_dict().items(), eager.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)  # the same training, to rounding
    (checkpoint,) = (in_tmp / "compiled").glob("last.ckpt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    MAPPO(env_spec=eager.env_spec, actor_cells=[16], critic_cells=[16], share_actor_params=False,
          share_critic_params=False).load_state_dict(state)  # strict: the eager module's keys exactly
