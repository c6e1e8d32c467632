"""``python -m marl_lightning compare``: statistics, tables and figures over finished MLflow runs of ``fit``.

``selection`` reads the runs (``store`` opens the tracking store), ``checks`` reports what makes groups hard
to compare, ``normalisation`` maps each task's returns to scores, ``statistics`` computes every estimate with
rliable, ``tables``, ``figures`` and ``marl_eval`` write them, ``command`` ties them together.
User docs: ``docs/comparing.md``.
"""
