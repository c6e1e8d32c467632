import pytest
import torch

from marl_lightning.core import keys
from marl_lightning.models import build_critic
from tests.conftest import make_spec, synthetic_batch


@pytest.mark.parametrize("share_params", [True, False])
@pytest.mark.parametrize("centralised", [True, False])
def test_which_agents_see_agent_zero(centralised, share_params):
    torch.manual_seed(0)
    spec = make_spec(n_agents=4)
    critic = build_critic(spec, [16, 16], share_params=share_params, centralised=centralised)
    batch = synthetic_batch(spec, batch=6)
    changed = batch.clone()
    changed[keys.OBSERVATION][:, 0] += 1.0
    with torch.no_grad():
        v0 = critic(batch)[keys.STATE_VALUE]  # [B, A, 1]
        v1 = critic(changed)[keys.STATE_VALUE]
    moved = (v0 - v1).abs().amax(dim=(0, 2)) > 1e-6  # [A]
    expected = [True] * 4 if centralised else [True, False, False, False]
    assert moved.tolist() == expected
