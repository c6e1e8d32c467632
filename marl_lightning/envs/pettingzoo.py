"""Any PettingZoo parallel environment through TorchRL's ``PettingZooWrapper``, batched with ``SerialEnv``.

All agents form the one ``"agents"`` group of the batch layout, so they must share observation and action
spaces. Copies are stepped together by TorchRL's ``SerialEnv`` (one process, a Python loop over copies)
or, with ``parallel=True``, ``ParallelEnv`` (one worker process per copy). On the 2-core machines this
project targets, ``SerialEnv`` is the faster choice (see ``benchmarks/env_throughput.py``); ``ParallelEnv``
pays off only with many cores and slow environments.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torchrl.envs import EnvBase, ParallelEnv, SerialEnv
from torchrl.envs.libs.pettingzoo import PettingZooWrapper

from marl_lightning.core import keys
from marl_lightning.core.errors import ConfigError
from marl_lightning.envs.base import EnvFactory


def load_parallel_env_constructor(path: str) -> Callable[..., Any]:
    """``"mpe2.simple_spread_v3"`` (a module with ``parallel_env``) or ``"pkg.module.callable"``."""
    try:
        module = importlib.import_module(path)
        constructor = getattr(module, "parallel_env", None)
        if constructor is None:
            raise ConfigError(f"data.env.env: module {path!r} has no parallel_env(); give a parallel env.")
        return constructor
    except ModuleNotFoundError as missing:
        module_path, _, attribute = path.rpartition(".")
        try:
            module = importlib.import_module(module_path) if module_path else None
        except ModuleNotFoundError:
            module = None
        if module is None or not hasattr(module, attribute):
            raise ConfigError(
                f"data.env.env: cannot import PettingZoo environment {path!r} ({missing}). Give a module "
                "path such as 'mpe2.simple_spread_v3' (install its package first) or 'pkg.module.callable'."
            ) from None
        return getattr(module, attribute)


def check_homogeneous(raw_env: Any) -> None:
    """Agents of the one group must share spaces; name those that differ and how."""
    agents = list(raw_env.possible_agents)
    first = agents[0]
    differences = []
    for space_name in ("observation_space", "action_space"):
        reference = getattr(raw_env, space_name)(first)
        for agent in agents[1:]:
            space = getattr(raw_env, space_name)(agent)
            if space != reference:
                differences.append(
                    f"{agent}'s {space_name.replace('_', ' ')} is {space}, {first}'s is {reference}"
                )
    if differences:
        raise ConfigError(
            "data.env: agents differ, and all agents form one group with one network: "
            + "; ".join(differences)
            + ". Choose a task whose agents share observation and action spaces."
        )


class AttributeForwardingPettingZooWrapper(PettingZooWrapper):
    """TorchRL's ``PettingZooWrapper`` that answers ``agents`` and ``agent_selection`` directly.

    The wrapper reads ``self.agents`` (and, for AEC envs, ``self.agent_selection``) in every step. Neither is
    an attribute of TorchRL's env, so each read goes through ``EnvBase.__getattr__``, which calls
    ``dir(self)`` before it forwards to the PettingZoo env: on mpe2 simple spread that is about 8 % of a
    step of the batched env (``docs/performance.md``). These two properties forward at once, to the env this
    wrapper was given (TorchRL wraps it as is); ``tests/test_pettingzoo.py`` pins that the rollouts are
    TorchRL's own, bit for bit.
    """

    def __init__(self, env: Any, **kwargs: Any) -> None:
        self.pettingzoo_env = env  # before TorchRL's __init__, which already reads ``agents``
        super().__init__(env, **kwargs)

    @property
    def agents(self) -> list[str]:
        """The PettingZoo env's live agents."""
        return self.pettingzoo_env.agents

    @property
    def agent_selection(self) -> str:
        """The AEC env's acting agent."""
        return self.pettingzoo_env.agent_selection


class PettingZoo(EnvFactory):
    """A PettingZoo parallel environment by import path and keyword arguments.

    Args:
        env: import path, e.g. ``"mpe2.simple_spread_v3"``.
        env_kwargs: keyword arguments of its ``parallel_env`` (e.g. ``{"N": 5, "max_cycles": 25}``).
        max_steps: the episode length the env enforces (used for evaluation rollouts); ``None`` reads
            ``env_kwargs["max_cycles"]`` when given.
        parallel: step copies in worker processes (``ParallelEnv``) instead of in this one (``SerialEnv``).
        return_state: add the env's global ``state()`` under ``"state"`` (the MAPPO critic then uses it).
        use_mask: for envs whose agents die or stop acting before the episode ends: the batch then holds
            ``("agents", "mask")`` [B, T, A] (False = absent); absent agents are masked out of advantages,
            losses and statistics, and an agent's episode ends when it disappears (no bootstrap from it).
            The episode ends when every agent is done.
    """

    def __init__(
        self,
        env: str = "mpe2.simple_spread_v3",
        env_kwargs: dict[str, Any] | None = None,
        max_steps: int | None = None,
        parallel: bool = False,
        return_state: bool = False,
        use_mask: bool = False,
    ) -> None:
        self.env = env
        self.env_kwargs = dict(env_kwargs or {})
        self._constructor = load_parallel_env_constructor(env)
        try:
            probe = self._constructor(**self.env_kwargs)
        except TypeError as error:
            raise ConfigError(
                f"data.env.env_kwargs: {env} does not accept {self.env_kwargs}: {error}"
            ) from None
        check_homogeneous(probe)
        probe.close()
        self._max_steps = max_steps if max_steps is not None else self.env_kwargs.get("max_cycles")
        self.parallel = parallel
        self.return_state = return_state
        self.use_mask = use_mask

    def hparams(self) -> dict:
        return {
            "env": self.env,
            "env_kwargs": self.env_kwargs,
            "max_steps": self._max_steps,
            "parallel": self.parallel,
            "return_state": self.return_state,
            "use_mask": self.use_mask,
        }

    @property
    def name(self) -> str:
        return self.env.rsplit(".", 1)[-1]

    @property
    def max_steps(self) -> int | None:
        return self._max_steps

    def _make_one(self, device: torch.device | str) -> EnvBase:
        raw = self._constructor(**self.env_kwargs)
        return AttributeForwardingPettingZooWrapper(
            raw,
            group_map={keys.GROUP: list(raw.possible_agents)},
            return_state=self.return_state,
            use_mask=self.use_mask,
            categorical_actions=True,
            done_on_any=False,
            device=device,
        )

    def make(self, num_envs: int, device: torch.device | str, seed: int) -> EnvBase:
        batched = ParallelEnv if self.parallel else SerialEnv
        env = batched(num_envs, partial(self._make_one, "cpu"), device=device)
        env.set_seed(seed)
        return env
