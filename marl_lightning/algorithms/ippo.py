"""IPPO: independent clipped ratios, decentralised critics (de Witt et al. 2020; paper 004, Eq. 4)."""

from marl_lightning.algorithms.base import MultiAgentPPOModule


class IPPO(MultiAgentPPOModule):
    """Multi-agent PPO whose critic for agent i sees only agent i's observation."""

    centralised_critic = False
