"""The interface every environment adapter implements, and the sizes a model needs from an env."""

from __future__ import annotations

import abc
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torchrl.data import Bounded, Categorical, TensorSpec, Unbounded
from torchrl.envs import Compose, EnvBase, RewardSum, TransformedEnv

from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.finite import FlagNonFiniteObservation


@dataclass(frozen=True)
class EnvSpec:
    """Sizes a model is built from, read once from the environment's specs.

    ``action_dim`` is the number of continuous action components, or the number of discrete choices.
    ``state_dim`` is the size of the env's global state (0 when it has none).
    """

    n_agents: int
    observation_dim: int
    action_dim: int
    continuous: bool
    action_low: float = -1.0
    action_high: float = 1.0
    state_dim: int = 0
    name: str = ""


class EnvFactory(abc.ABC):
    """Builds seeded, vectorised TorchRL envs of one task. Subclasses are LightningCLI choices."""

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """Short task name used in run names, e.g. ``"navigation"``."""

    def hparams(self) -> dict:
        """The constructor arguments, logged as run parameters."""
        return {k.lstrip("_"): v for k, v in vars(self).items()}

    @property
    def max_steps(self) -> int | None:
        """Episode length limit, if the env has one."""
        return None

    def evaluation_metrics(self, policy: torch.nn.Module, return_mean: float) -> dict[str, float]:
        """Task-specific evaluation figures, e.g. the gap to a known optimum.

        Called after each evaluation with the policy and the evaluated mean episode return (already
        averaged over agents, episodes and ranks); keys are metric names such as ``"eval/optimality_gap"``.
        """
        return {}

    def exact_value_metrics(self, value: float) -> dict[str, float]:
        """Task-specific figures of a policy whose exact expected team return ``value`` is known (tabular
        algorithms compute it from the game's tables), e.g. ``{"eval/optimality_gap": ...}``; none by default.
        """
        return {}

    def reference_returns(self) -> dict[str, float]:
        """The task's known expected team returns for normalised scores (``compare``): ``"optimum"`` (the best
        any policy reaches) and ``"random"`` (the uniformly random policy's), where the task knows them; the
        fit logs them as the run tags ``task.optimum`` and ``task.random_return``. None by default.
        """
        return {}

    @abc.abstractmethod
    def make(self, num_envs: int, device: torch.device | str, seed: int) -> EnvBase:
        """A raw TorchRL env with batch size ``[num_envs]`` and the ``"agents"`` group."""

    def make_transformed(self, num_envs: int, device: torch.device | str, seed: int) -> TransformedEnv:
        """The env with non-finite observations flagged (``envs.finite``) and each agent's episode return
        tracked in ``("agents", "episode_reward")``."""
        env = self.make(num_envs, device, seed)
        # The group's reset key when the env has one per group (PettingZoo), else the root one (VMAS).
        group_reset = (keys.GROUP, "_reset")
        reset_key = group_reset if group_reset in env.reset_keys else env.reset_keys[0]
        return TransformedEnv(
            env,
            Compose(
                FlagNonFiniteObservation(),
                RewardSum(in_keys=[keys.REWARD], out_keys=[keys.EPISODE_REWARD], reset_keys=[reset_key]),
            ),
        )

    def spec(self) -> EnvSpec:
        """Read the sizes a model needs from a one-env instance.

        A simulator that refuses the settings (VMAS's ``balance`` asserts ``n_agents > 1``) is reported as
        a ConfigError naming the task, its settings and the check that failed.
        """
        try:
            env = self.make(1, "cpu", 0)
        except ConfigError:
            raise
        except Exception as error:
            frame = traceback.extract_tb(error.__traceback__)[-1]
            check = f"`{frame.line}` in {Path(frame.filename).name} line {frame.lineno}" if frame.line else ""
            settings = ", ".join(f"{key}={value!r}" for key, value in self.hparams().items())
            raise ConfigError(
                f"data.env: task {self.name!r} cannot be built with {settings}: "
                f"{type(error).__name__}{': ' + str(error) if str(error) else ''}"
                f"{' (failed check: ' + check + ')' if check else ''}. Change the named setting "
                "(e.g. --data.env.init_args.n_agents) to one the task accepts."
            ) from error
        try:
            return spec_from_env(env, self.name)
        finally:
            env.close()


def check_supported_spaces(obs_spec: TensorSpec, action_spec: TensorSpec, batch_dims: int, task: str) -> None:
    """Policies here take a flat observation vector per agent and emit one discrete choice (``Categorical``,
    [*B, A]) or a box of continuous actions (``Bounded``/``Unbounded``, [*B, A, d]); anything else is named.
    """
    per_agent_obs = tuple(obs_spec.shape[batch_dims + 1 :])
    per_agent_action = tuple(action_spec.shape[batch_dims + 1 :])
    if len(per_agent_obs) != 1:
        raise ConfigError(
            f"data.env: task {task!r} observes {per_agent_obs} per agent; the policies here take "
            "a flat vector per agent ([n_agents, features]). Flatten the observation in the env (e.g. a "
            "PettingZoo/SuperSuit flatten wrapper) or choose a vector-observation task."
        )
    kind = type(action_spec).__name__
    discrete_ok = isinstance(action_spec, Categorical) and per_agent_action == ()
    continuous_ok = (
        isinstance(action_spec, Bounded | Unbounded)
        and action_spec.dtype.is_floating_point
        and len(per_agent_action) == 1
    )
    if not (discrete_ok or continuous_ok):
        raise ConfigError(
            f"data.env: task {task!r} has an action space marl_lightning cannot handle: {kind} of shape "
            f"{per_agent_action} per agent ({action_spec.dtype}). Supported per agent: one discrete choice "
            "(Discrete / Categorical) or a box of continuous actions (Box / Bounded). MultiDiscrete, "
            "MultiBinary, one-hot and dict/tuple action spaces are not."
        )


def spec_from_env(env: EnvBase, name: str = "") -> EnvSpec:
    """Extract an :class:`EnvSpec` from a TorchRL multi-agent env."""
    obs_spec = env.observation_spec[keys.OBSERVATION]
    action_spec = env.full_action_spec[keys.ACTION]
    n_agents = obs_spec.shape[-2]
    check_supported_spaces(obs_spec, action_spec, len(env.batch_size), name or type(env).__name__)
    continuous = action_spec.dtype.is_floating_point
    if continuous:
        action_dim = action_spec.shape[-1]
        low = float(action_spec.space.low.min())
        high = float(action_spec.space.high.max())
    else:
        action_dim = int(action_spec.space.n)
        low, high = 0.0, float(action_dim - 1)
    state_dim = 0
    if keys.STATE in env.observation_spec.keys():
        state_dim = env.observation_spec[keys.STATE].shape[-1]
    return EnvSpec(
        n_agents=n_agents,
        observation_dim=obs_spec.shape[-1],
        action_dim=action_dim,
        continuous=continuous,
        action_low=low,
        action_high=high,
        state_dim=state_dim,
        name=name,
    )
