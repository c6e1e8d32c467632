"""MAPPO: independent clipped ratios, a centralised critic (Yu et al. 2022; paper 004, Eq. 5)."""

from marl_lightning.algorithms.base import MultiAgentPPOModule


class MAPPO(MultiAgentPPOModule):
    """Multi-agent PPO whose critic sees every agent's observation (or the env's global state)."""

    centralised_critic = True
