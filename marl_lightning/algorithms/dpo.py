"""DPO: fully decentralised policy optimisation with adaptive √KL and KL penalties (paper 003)."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from marl_lightning.algorithms.base import MultiAgentPPOModule
from marl_lightning.core.errors import ConfigError
from marl_lightning.objectives.dpo import DPOLoss

_LOSS_OPTIONS = ("beta_init", "scale_by_n_agents", "sqrt_kl_per_state", "clip", "use_sqrt_kl", "use_kl")


class DPO(MultiAgentPPOModule):
    """Each agent has its own actor and decentralised critic and maximises Equation 20 of paper 003.

    β1^i, β2^i are per-agent buffers of the loss (``loss_module.beta1`` / ``beta2``, [A]), updated once
    per iteration by ``callbacks.AdaptiveBeta`` (Equation 21) towards ``d_target``, the task-dependent
    KL the paper tunes per environment (0.1 for its stochastic game, 0.01 for MPE). A fit without that
    callback is refused unless ``adaptive_beta`` is off (then β stays at ``beta_init``).

    Args (beyond :class:`MultiAgentPPOModule`'s):
        beta_init: initial β1^i and β2^i (the paper's 0.01).
        d_target: target average KL per agent of Equation 21.
        scale_by_n_agents, sqrt_kl_per_state, clip, use_sqrt_kl, use_kl: see :class:`DPOLoss`.
        adaptive_beta: require ``callbacks.AdaptiveBeta`` (on) or keep β fixed (off).
        share_actor_params, share_critic_params: off, as the paper (sharing is centralised learning).
    """

    centralised_critic = False

    def __init__(
        self,
        *args: Any,
        beta_init: float = 0.01,
        d_target: float = 0.01,
        scale_by_n_agents: bool = True,
        sqrt_kl_per_state: bool = True,
        clip: bool = False,
        use_sqrt_kl: bool = True,
        use_kl: bool = True,
        adaptive_beta: bool = True,
        share_actor_params: bool = False,
        share_critic_params: bool = False,
        **kwargs: Any,
    ) -> None:
        if not beta_init > 0 or not d_target > 0:
            raise ConfigError(f"model.beta_init ({beta_init}) and model.d_target ({d_target}) must be > 0.")
        super().__init__(
            *args, share_actor_params=share_actor_params, share_critic_params=share_critic_params, **kwargs
        )

    @property
    @override
    def algorithm_label(self) -> str:
        """``dpo``, or the ablation's name: ``dpo_no_sqrt``, ``dpo_no_kl``, ``ippo_kl`` (no √KL, no 1/N)."""
        hp = self.hparams
        if not hp.use_sqrt_kl:
            return "dpo_no_sqrt" if hp.scale_by_n_agents else "ippo_kl"
        return "dpo" if hp.use_kl else "dpo_no_kl"

    @override
    def make_loss(self) -> DPOLoss:
        hp = self.hparams
        options = {name: hp[name] for name in _LOSS_OPTIONS} | self.loss_kwargs()
        return DPOLoss(self.actor, self.critic, n_agents=self.env_spec.n_agents, **options)

    @override
    def on_fit_start(self) -> None:
        super().on_fit_start()
        names = {type(callback).__name__ for callback in self.trainer.callbacks}
        if self.hparams.adaptive_beta and "AdaptiveBeta" not in names:
            raise ConfigError(
                "DPO adapts β1/β2 with the callbacks.AdaptiveBeta callback (Equation 21), which this trainer "
                "lacks: add it to trainer.callbacks (conf/dpo.yaml does) or pass --model.init_args."
                "adaptive_beta false to keep β fixed at beta_init."
            )
