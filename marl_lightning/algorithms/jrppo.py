"""JR-PPO: the joint ratio clipped against a centralised advantage (paper 004, Eq. 7 and Algorithm 1)."""

from typing_extensions import override

from marl_lightning.algorithms.base import MultiAgentPPOModule
from marl_lightning.objectives.jrppo import JointRatioPPOLoss


class JRPPO(MultiAgentPPOModule):
    """Decentralised actors updated through the joint ratio Π_k π̃_k/π_k, a centralised critic (as MAPPO)."""

    centralised_critic = True

    @override
    def make_loss(self) -> JointRatioPPOLoss:
        return JointRatioPPOLoss(self.actor, self.critic, **self.loss_kwargs())
