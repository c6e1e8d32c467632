"""Team reward/done expanded to every agent, once, in the data layer (losses never broadcast)."""

from __future__ import annotations

from tensordict import TensorDictBase

from marl_lightning.core import keys


def expand_team_signals(batch: TensorDictBase, n_agents: int) -> TensorDictBase:
    """Write ``("next", "agents", done|terminated|reward)`` as [..., A, 1] views of the team signals.

    Per-agent entries the env already produces are left as they are.

    Shapes:
        ("next", "done"): [B, T, 1] -> ("next", "agents", "done"): [B, T, A, 1].
    """
    nxt = batch.get(keys.NEXT)
    group = nxt.get(keys.GROUP)
    for name in (keys.ROOT_DONE, keys.ROOT_TERMINATED, "reward"):
        if name in group.keys() or name not in nxt.keys():
            continue
        team = nxt.get(name)  # [B, T, 1]
        group.set(name, team.unsqueeze(-2).expand(*team.shape[:-1], n_agents, team.shape[-1]))
    return batch
