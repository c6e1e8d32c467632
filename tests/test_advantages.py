import pytest
import torch

from marl_lightning.objectives import gae, standardise_per_agent


def _col(values):  # [1, T, 1, 1]
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


def test_gae_matches_hand_computed_terminal_case():
    gamma, lmbda = 0.9, 0.8
    reward = _col([1.0, 2.0, 3.0])
    value = _col([0.5, 0.4, 0.3])
    next_value = _col([0.4, 0.3, 0.2])
    done = _col([0, 0, 1]).bool()
    adv, target = gae(reward, done, done.clone(), value, next_value, gamma, lmbda)
    # δ = r + γ V' (1 - term) - V = [0.86, 1.87, 2.7]; A_t = δ_t + γλ A_{t+1}
    expected = torch.tensor([0.86 + 0.72 * (1.87 + 0.72 * 2.7), 1.87 + 0.72 * 2.7, 2.7])
    torch.testing.assert_close(adv.flatten(), expected)
    torch.testing.assert_close(target, adv + value)


def test_gae_truncation_bootstraps_but_cuts_the_sum():
    gamma, lmbda = 0.9, 0.8
    reward = _col([1.0, 2.0, 3.0])
    value = _col([0.5, 0.4, 0.3])
    next_value = _col([0.4, 0.3, 0.2])
    done = _col([0, 1, 0]).bool()  # truncated after t=1: V(s_2') still bootstraps
    terminated = torch.zeros_like(done)
    adv, _ = gae(reward, done, terminated, value, next_value, gamma, lmbda)
    d = torch.tensor([1 + 0.9 * 0.4 - 0.5, 2 + 0.9 * 0.3 - 0.4, 3 + 0.9 * 0.2 - 0.3])
    expected = torch.stack([d[0] + 0.72 * d[1], d[1], d[2]])
    torch.testing.assert_close(adv.flatten(), expected)


def test_gae_agents_are_independent():
    reward = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 2, 1)  # [B, T, A, 1]
    zeros = torch.zeros_like(reward)
    done = torch.tensor([[0, 0], [1, 1]]).bool().view(1, 2, 2, 1)
    adv, _ = gae(reward, done, done, zeros, zeros, 1.0, 1.0)
    torch.testing.assert_close(adv[0, :, 0, 0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(adv[0, :, 1, 0], torch.tensor([1.0, 1.0]))


def test_gae_rejects_unexpanded_team_done():
    reward = torch.zeros(1, 3, 2, 1)
    with pytest.raises(ValueError, match="Expand team signals"):
        gae(reward, torch.zeros(1, 3, 1).bool(), torch.zeros(1, 3, 1).bool(), reward, reward, 0.9, 0.9)


def test_standardise_is_per_agent():
    g = torch.Generator().manual_seed(0)
    adv = torch.randn(50, 4, 3, 1, generator=g) * torch.tensor([1.0, 10.0, 100.0]).view(3, 1) + 5
    out = standardise_per_agent(adv)
    flat = out.reshape(-1, 3)
    torch.testing.assert_close(flat.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(0), torch.ones(3), atol=1e-4, rtol=0)
