"""Actor and critic builders, vectorised over agents (TorchRL ``MultiAgentMLP``: no loop over agents)."""

from marl_lightning.models.actor import build_actor
from marl_lightning.models.critic import build_critic
from marl_lightning.models.q_critic import JointActionQCritic

__all__ = ["JointActionQCritic", "build_actor", "build_critic"]
