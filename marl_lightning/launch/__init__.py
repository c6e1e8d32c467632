"""Processes and machines: the rollout DDP strategy and its collectives, SLURM requeue."""
