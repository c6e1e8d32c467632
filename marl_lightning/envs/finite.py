"""A transform that flags non-finite observations where they leave the env, before a policy reads them."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from torchrl.data import Categorical, Composite
from torchrl.envs import Transform
from typing_extensions import override

from marl_lightning.core import keys


class FlagNonFiniteObservation(Transform):
    """Writes ``("agents", "observation_nonfinite")`` [*B, A]: whether an agent's observation held a NaN
    or Inf; such entries are replaced by zeros.

    Without it a NaN observation reaches the policy, whose action distribution then fails mid-collection
    (``torch.multinomial``: "probability tensor contains either inf, nan or element < 0") with no word of
    the env, the key or the agent. With it the rollout completes and ``marl_lightning.safety.health`` names
    them once per iteration. Finite observations pass unchanged (no host sync here, one ``isfinite`` a step).
    """

    def __init__(self) -> None:
        super().__init__(in_keys=[keys.OBSERVATION], out_keys=[keys.OBSERVATION_NONFINITE])

    def _flag(self, tensordict: TensorDictBase) -> TensorDictBase:
        observation = tensordict.get(keys.OBSERVATION)  # [*B, A, F]
        tensordict.set(keys.OBSERVATION_NONFINITE, ~torch.isfinite(observation).all(-1))  # [*B, A]
        tensordict.set(keys.OBSERVATION, torch.nan_to_num(observation, nan=0.0, posinf=0.0, neginf=0.0))
        return tensordict

    @override
    def _call(self, next_tensordict: TensorDictBase) -> TensorDictBase:
        return self._flag(next_tensordict)

    @override
    def _reset(self, tensordict: TensorDictBase, tensordict_reset: TensorDictBase) -> TensorDictBase:
        return self._flag(tensordict_reset)

    @override
    def transform_observation_spec(self, observation_spec: Composite) -> Composite:
        agent_shape = observation_spec[keys.OBSERVATION].shape[:-1]  # [*B, A]
        observation_spec[keys.OBSERVATION_NONFINITE] = Categorical(
            2, shape=agent_shape, dtype=torch.bool, device=observation_spec.device
        )
        return observation_spec
