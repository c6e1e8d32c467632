"""Every TensorDict key the code reads or writes (TorchRL's multi-agent layout)."""

GROUP = "agents"

OBSERVATION = (GROUP, "observation")
ACTION = (GROUP, "action")
# tensordict's current default: the action key plus "_log_prob", never the legacy "sample_log_prob".
ACTION_LOG_PROB = (GROUP, "action_log_prob")
LOC = (GROUP, "loc")
SCALE = (GROUP, "scale")
LOGITS = (GROUP, "logits")
REWARD = (GROUP, "reward")
DONE = (GROUP, "done")
TERMINATED = (GROUP, "terminated")
EPISODE_REWARD = (GROUP, "episode_reward")
STATE_VALUE = (GROUP, "state_value")
ADVANTAGE = (GROUP, "advantage")
VALUE_TARGET = (GROUP, "value_target")
# Present agents (PettingZoo use_mask): [..., A] bool, False for agents dead or not acting at that step.
MASK = (GROUP, "mask")
# Set by envs.finite.FlagNonFiniteObservation: [..., A] bool, True where the env's observation held a NaN
# or Inf (then replaced by zeros, so the policy can act; marl_lightning.safety.health reports it).
OBSERVATION_NONFINITE = (GROUP, "observation_nonfinite")

# Sequential PPO (paper 002): the team's advantage and the earlier-updated agents' new/old ratio, [B].
JOINT_ADVANTAGE = "joint_advantage"
EARLIER_RATIO = "earlier_ratio"

STATE = "state"
ROOT_DONE = "done"
ROOT_TERMINATED = "terminated"
NEXT = "next"


def nxt(key: tuple[str, ...] | str) -> tuple[str, ...]:
    """The ``("next", ...)`` version of a key."""
    return (NEXT, *key) if isinstance(key, tuple) else (NEXT, key)
