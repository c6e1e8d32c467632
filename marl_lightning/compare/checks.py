"""What makes groups hard to compare, found before anything is computed: each finding is one paragraph,
printed as a warning and written into the summary (none of them stops the comparison)."""

from __future__ import annotations

from marl_lightning.compare.selection import Selection

FEW_SEEDS = 5  # below this, 95% intervals over seeds are wide (Agarwal et al. 2021 recommend more)


def _listing(by_group: dict[str, object]) -> str:
    return "; ".join(f"{group}: {value}" for group, value in by_group.items())


def design_warnings(selection: Selection) -> list[str]:
    """Groups that miss tasks, or differ in seeds or budgets (final frames); fewer than 5 seeds."""
    warnings = []
    groups, tasks = selection.groups, selection.tasks
    for group in groups:
        missing = [task for task in tasks if not selection.runs_of(task, group)]
        if missing:
            warnings.append(
                f"group {group} has no run on the task(s) {', '.join(missing)}: its per-task results cover "
                f"only the other tasks, and the aggregates across tasks use only the tasks every group ran."
            )
    for task in tasks:
        present = {g: selection.runs_of(task, g) for g in groups if selection.runs_of(task, g)}
        seeds = {g: sorted({r.seed for r in runs}) for g, runs in present.items()}
        if len({tuple(s) for s in seeds.values()}) > 1:
            counts = {g: f"{len(runs)} runs, seeds {', '.join(seeds[g])}" for g, runs in present.items()}
            warnings.append(
                f"task {task}: the groups ran different seeds ({_listing(counts)}). Per-task statistics use "
                f"each group's own runs; aggregates across tasks need as many runs per task within a group "
                f"(stratified bootstrap) and keep a group's first runs in seed order where its tasks differ."
            )
        for group, runs in present.items():
            duplicated = sorted({r.seed for r in runs if sum(o.seed == r.seed for o in runs) > 1})
            if duplicated:
                warnings.append(
                    f"task {task}, group {group}: seed(s) {', '.join(duplicated)} ran more than once; "
                    f"every run counts as one sample. Narrow the selection (e.g. --filter) to keep one run "
                    f"per seed."
                )
        budgets = {g: sorted({r.final_frames for r in runs}) for g, runs in present.items()}
        if len({b for values in budgets.values() for b in values}) > 1:
            ranges = {g: ", ".join(f"{b:,}" for b in values) for g, values in budgets.items()}
            warnings.append(
                f"task {task}: the runs end at different frames ({_listing(ranges)} frames); final values "
                f"compare runs at different budgets, and curves cover only the frames all runs of a group "
                f"reached."
            )
        few = {g: len(runs) for g, runs in present.items() if len(runs) < FEW_SEEDS}
        if few:
            warnings.append(
                f"task {task}: fewer than {FEW_SEEDS} seeds ({_listing(few)}): the 95% intervals are wide "
                f"and the IQM trims little; run more seeds for conclusions."
            )
    return warnings
