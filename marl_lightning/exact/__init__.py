"""Exact solutions of tabular games: dynamic programming over known tables, a box-constrained QP."""
