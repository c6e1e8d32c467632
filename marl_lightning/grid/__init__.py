"""``python -m marl_lightning grid``: a grid of ordinary ``fit`` runs, one MLflow parent run per grid."""
