"""tanh through the sigmoid kernel (``models.activations``) is tanh: values, gradients, vmap, the models.

The sigmoid form is forced for these tests (``MARL_LIGHTNING_TANH=sigmoid``): unforced, a CPU where
``torch.tanh`` is the faster kernel would never run it.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from marl_lightning.algorithms import MAPPO
from marl_lightning.envs.base import EnvSpec
from marl_lightning.models import activations
from marl_lightning.models.activations import KERNEL_ENV, Tanh, sigmoid_form_pays, tanh
from marl_lightning.models.mlp import agent_mlp

SPEC = EnvSpec(n_agents=3, observation_dim=5, action_dim=2, continuous=True)


@pytest.fixture(autouse=True)
def sigmoid_form(monkeypatch):
    monkeypatch.setenv(KERNEL_ENV, "sigmoid")
    sigmoid_form_pays.cache_clear()
    yield
    sigmoid_form_pays.cache_clear()


def test_the_kernel_is_chosen_once_per_process_and_can_be_fixed(monkeypatch):
    assert sigmoid_form_pays()
    monkeypatch.setenv(KERNEL_ENV, "tanh")
    assert sigmoid_form_pays()  # cached: one choice a process
    sigmoid_form_pays.cache_clear()
    assert not sigmoid_form_pays()
    x = torch.randn(100)
    assert torch.equal(tanh(x), torch.tanh(x))  # the tanh kernel itself
    monkeypatch.delenv(KERNEL_ENV)
    sigmoid_form_pays.cache_clear()
    calls = []
    monkeypatch.setattr(activations, "_sigmoid_form", lambda t: calls.append(1) or torch.sigmoid(t))
    pays = sigmoid_form_pays()
    assert isinstance(pays, bool) and len(calls) == 90  # measured: 9 rounds of 10 calls
    assert os.environ[KERNEL_ENV] == ("sigmoid" if pays else "tanh")  # exported to the processes it starts


def _inputs() -> torch.Tensor:
    x = torch.linspace(-30.0, 30.0, 20001)  # saturated ends, and the cancellation region near 0
    return torch.cat([x, torch.randn(5000) * 2.0, torch.tensor([0.0, -0.0, 1e-8, -1e-8])])


def test_values_match_torch_tanh_to_rounding() -> None:
    x = _inputs()
    y = tanh(x)
    assert (y - torch.tanh(x)).abs().max() < 3e-7
    assert y.abs().max() <= 1.0
    assert tanh(torch.tensor([30.0, -30.0])).tolist() == [1.0, -1.0]


def test_gradient_is_tanh_backward_of_its_output() -> None:
    x = _inputs().requires_grad_(True)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    y = tanh(x)
    y.backward(grad)
    assert torch.equal(x.grad, torch.ops.aten.tanh_backward(grad, y.detach()))
    # g·(1 − y²) written out rounds 1 − y² differently near |y| = 1 (a vectorised kernel fuses it): 1e-7 of g
    written_out = grad * (1 - y.detach() ** 2)
    assert torch.allclose(x.grad, written_out, rtol=1e-6, atol=1e-7 * float(grad.abs().max()))
    reference = x.detach().clone().requires_grad_(True)
    torch.tanh(reference).backward(grad)
    assert (x.grad - reference.grad).abs().max() < 3e-6


def test_no_grad_path_computes_the_same_values() -> None:
    x = torch.randn(64, 32, requires_grad=True)
    with_grad = tanh(x)
    with torch.no_grad():
        without = tanh(x)
    assert torch.equal(with_grad.detach(), without)


def test_per_agent_networks_under_vmap_match_torch_tanh() -> None:
    torch.manual_seed(0)
    ours = agent_mlp(5, 2, 3, [16, 16], share_params=False, activation=Tanh)
    torch.manual_seed(0)
    reference = agent_mlp(5, 2, 3, [16, 16], share_params=False, activation=nn.Tanh)
    x = torch.randn(7, 3, 5)
    out, out_ref = ours(x), reference(x)
    assert (out - out_ref).abs().max() < 1e-6
    out.sum().backward()
    out_ref.sum().backward()
    for p, q in zip(ours.parameters(), reference.parameters(), strict=True):
        assert (p.grad - q.grad).abs().max() < 1e-5


def test_models_use_it_for_tanh() -> None:
    module = MAPPO(env_spec=SPEC, actor_cells=[8], critic_cells=[8])
    activations = [m for m in (*module.actor.modules(), *module.critic.modules()) if isinstance(m, nn.Tanh)]
    assert activations and all(type(m) is Tanh for m in activations)
