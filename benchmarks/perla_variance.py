"""PERLA's variance reduction on a fixed batch against K (paper 000, Theorem 1).

Usage: python benchmarks/perla_variance.py [--iterations 5] [--repeats 30]
Trains PERLA-MAPPO briefly on a small cooperative stochastic game (20 states, 3 agents, 5 actions, so the
exact marginal Q̃_i(s, a_i) = E_{a_−i}[Q_i] can be enumerated), collects one batch, and for K in
{1, 2, 4, 8, 16} prints, over ``--repeats`` independent draws of the K samples:
  Var(Q̂)      the variance of Q̂_i(s, a_i) over the batch and the draws, and Theorem 1's prediction
              1/K·Var(Q) + (K−1)/K·Var(Q̃), with Var(Q) the K = 1 variance and Var(Q̃) the exact marginal's;
  Var(A)      the variance of the advantage estimate Q̂_i − V̂_i (``advantage: q``) over batch and draws;
  tr Cov(g)   the policy-gradient estimate's variance on the fixed batch: the summed per-parameter
              variance, across draws, of ∇θ mean_t,i[log π_i(a_i|o_i) A_i].
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch

from marl_lightning.cli import MarlCLI
from marl_lightning.core import keys
from marl_lightning.data.team_signals import expand_team_signals
from marl_lightning.objectives.perla import exact_marginal_q, marginal_q, marginal_value, sample_joint_actions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # the training run below takes its own arguments
    workdir = tempfile.mkdtemp(prefix="perla_variance_")
    frames = 1200
    cli = MarlCLI(args=[
        "fit", "--config", "conf/perla_mappo.yaml", "--config", "conf/env/stochastic_game.yaml",
        "--data.env.init_args.n_states", "20", "--data.env.init_args.n_agents", "3",
        "--data.env.init_args.horizon", "20", "--data.num_envs", "60", "--data.frames_per_batch", str(frames),
        "--model.total_frames", str(frames * args.iterations), "--model.init_args.minibatch_size", "400",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.limit_val_batches", "0", "--trainer.callbacks.init_args.dirpath", workdir,
    ])
    model, factory = cli.model, cli.datamodule.env_factory
    critic, actor = model.critic, model.actor
    env = factory.make_transformed(60, "cpu", seed=123)
    with torch.no_grad():
        batch = expand_team_signals(env.rollout(20, model.policy), n_agents=3).reshape(-1)  # [N]
        context, own = critic.context(batch), critic.encode(batch.get(keys.ACTION))
        probs = torch.softmax(batch.get(keys.LOGITS), -1)
        exact = exact_marginal_q(critic, context, own, probs)  # [N, A, 1]
        torch.manual_seed(0)
        many = sample_joint_actions(actor, batch, 64, critic)
        var_q = float(marginal_q(critic, context, own, many)[1].var())  # single-sample Q over batch, draws
    var_exact = float(exact.var())
    params = list(actor.parameters())
    dist = actor.get_dist(batch.select(keys.OBSERVATION).copy())
    log_prob = dist.log_prob(batch.get(keys.ACTION))  # [N, A]

    print(f"batch: {batch.shape[0]} states x 3 agents; Var(Q) (K=1) = {var_q:.5f}, "
          f"Var(Q~) (exact) = {var_exact:.5f}")
    print(f"{'K':>3} {'Var(Q^)':>10} {'Theorem 1':>10} {'Var(A)':>10} {'tr Cov(g)':>11}")
    for k in (1, 2, 4, 8, 16):
        q_values, advantages, grads = [], [], []
        for _ in range(args.repeats):
            with torch.no_grad():
                samples = sample_joint_actions(actor, batch, k, critic)
                q_hat = marginal_q(critic, context, own, samples)[0]
                advantage = q_hat - marginal_value(critic, context, samples)
            q_values.append(q_hat)
            advantages.append(advantage)
            surrogate = (log_prob * advantage.squeeze(-1)).mean()
            grad = torch.autograd.grad(surrogate, params, retain_graph=True)
            grads.append(torch.cat([g.flatten() for g in grad]))
        predicted = var_q / k + (k - 1) / k * var_exact
        var_hat = float(torch.stack(q_values).var())
        var_adv = float(torch.stack(advantages).var())
        trace = float(torch.stack(grads).var(0).sum())
        print(f"{k:>3} {var_hat:>10.5f} {predicted:>10.5f} {var_adv:>10.5f} {trace:>11.3e}")


if __name__ == "__main__":
    main()
