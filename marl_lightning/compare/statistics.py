"""Every estimate of a comparison: Student-t intervals of means over seeds, and rliable's interquartile mean,
aggregates, probability of improvement and performance profiles with stratified-bootstrap intervals.

Conventions: scores of a group are rliable's ``[n_runs, n_tasks]`` (final values) or
``[n_runs, n_tasks, n_points]`` (curves); intervals are 95%; the bootstrap is rliable's percentile
stratified bootstrap over runs within each task (Agarwal et al. 2021, "Deep RL at the Edge of the
Statistical Precipice"), ``reps`` resamples, seeded by ``seed``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np
import scipy.stats
from rliable import library, metrics

from marl_lightning.compare.normalisation import Normalisation
from marl_lightning.compare.selection import RunHistory, Selection

CONFIDENCE = 0.95
CURVE_POINTS = 60  # at most this many frames per curve (each point costs one bootstrap)
PROFILE_POINTS = 101
AGGREGATES = ("IQM", "mean", "median", "optimality gap")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws its resamples from NumPy's global generator: seed it, restore it after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def t_interval(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 and its 95% Student-t interval with n − 1 degrees of freedom (NaN for n = 1).

    Shapes: ``samples`` is ``[n, ...]``; the three results are ``[...]``.
    """
    n = samples.shape[0]
    mean = samples.mean(axis=0)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    half = scipy.stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * samples.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def _interval_estimates(score_dict: dict, func, reps: int, seed: int) -> tuple[dict, dict]:
    """rliable's ``get_interval_estimates``, one key at a time, each from a generator seeded by ``seed``:
    a group's interval does not depend on which other groups are compared."""
    points, intervals = {}, {}
    for key, scores in score_dict.items():
        with seeded(seed):
            point, interval = library.get_interval_estimates(
                {key: scores}, func, reps=reps, confidence_interval_size=CONFIDENCE
            )
        points[key], intervals[key] = point[key], interval[key]
    return points, intervals


def _iqm_per_point(scores: np.ndarray) -> np.ndarray:
    """rliable's IQM (``metrics.aggregate_iqm``: the 25% trimmed mean over runs and tasks) at every point of a
    curve, as rliable's sample-efficiency recipe computes it point by point, in one call.

    Shapes: ``[n, T, P]`` → ``[P]``.
    """
    return scipy.stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)


# ---------------------------------------------------------------- per task, raw returns
@dataclasses.dataclass(frozen=True)
class FinalValue:
    """A group's final value on a task: the metric's last logged point of each of its runs."""

    task: str
    group: str
    n_seeds: int
    mean: float
    mean_low: float  # 95% Student-t interval, n − 1 degrees of freedom
    mean_high: float
    iqm: float
    iqm_low: float  # 95% stratified-bootstrap interval
    iqm_high: float
    frames_min: int  # the runs' final frames
    frames_max: int


def final_values(selection: Selection, reps: int, seed: int) -> list[FinalValue]:
    rows = []
    for task in selection.tasks:
        present = {g: selection.runs_of(task, g) for g in selection.groups if selection.runs_of(task, g)}
        finals = {g: np.array([[r.final] for r in runs]) for g, runs in present.items()}  # [n, 1]
        iqm, iqm_ci = _interval_estimates(finals, lambda s: np.array([metrics.aggregate_iqm(s)]), reps, seed)
        for group, runs in present.items():
            mean, low, high = t_interval(finals[group][:, 0])
            frames = [r.final_frames for r in runs]
            rows.append(
                FinalValue(
                    task,
                    group,
                    len(runs),
                    float(mean),
                    float(low),
                    float(high),
                    float(iqm[group][0]),
                    float(iqm_ci[group][0, 0]),
                    float(iqm_ci[group][1, 0]),
                    min(frames),
                    max(frames),
                )
            )
    return rows


@dataclasses.dataclass(frozen=True)
class Curve:
    """A group's learning curve on a task (or, across tasks, its sample-efficiency curve).

    Shapes: every array is ``[P]``.
    """

    task: str
    group: str
    n_seeds: int
    frames: np.ndarray
    mean: np.ndarray
    mean_low: np.ndarray
    mean_high: np.ndarray
    iqm: np.ndarray
    iqm_low: np.ndarray
    iqm_high: np.ndarray


def frame_grid(runs: list[RunHistory]) -> np.ndarray:
    """The frames every run reached: the union of their logged frames within [latest first, earliest last],
    thinned to ``CURVE_POINTS`` evenly spaced frames when longer. Empty when the runs share no frames."""
    start, end = max(r.frames[0] for r in runs), min(r.frames[-1] for r in runs)
    frames = np.unique(np.concatenate([r.frames for r in runs]))
    frames = frames[(frames >= start) & (frames <= end)]
    if len(frames) > CURVE_POINTS:
        frames = np.linspace(start, end, CURVE_POINTS)
    return frames


def resample(runs: list[RunHistory], frames: np.ndarray) -> np.ndarray:
    """Each run's metric at ``frames``, linearly interpolated between its logged points (exact where it
    logged them). Shapes: → ``[n_runs, P]``."""
    return np.stack([np.interp(frames, r.frames, r.values) for r in runs])


def learning_curves(selection: Selection, reps: int, seed: int) -> list[Curve]:
    curves = []
    for task in selection.tasks:
        for group in selection.groups:
            runs = selection.runs_of(task, group)
            frames = frame_grid(runs) if runs else np.empty(0)
            if len(frames) == 0:
                continue
            values = resample(runs, frames)
            mean, low, high = t_interval(values)
            scores = {group: values[:, None, :]}
            iqm, ci = _interval_estimates(scores, _iqm_per_point, reps, seed)
            curves.append(Curve(task, group, len(runs), frames, mean, low, high, iqm[group], *ci[group]))
    return curves


# ---------------------------------------------------------------- across tasks, normalised scores
@dataclasses.dataclass
class ScoreMatrix:
    """Normalised final scores per group on the tasks every group ran, ``[n_runs, n_tasks]`` each, with the
    runs behind them (``runs[group][task_index]``, in seed order)."""

    tasks: list[str]
    scores: dict[str, np.ndarray]
    runs: dict[str, list[list[RunHistory]]]
    notes: list[str]


def score_matrix(selection: Selection, normalisations: dict[str, Normalisation]) -> ScoreMatrix:
    """rliable's score matrices. The stratified bootstrap needs as many runs on every task within a group:
    a group with more runs on some tasks keeps its first runs in seed order there (and says so)."""
    groups = selection.groups
    tasks = [t for t in selection.tasks if all(selection.runs_of(t, g) for g in groups)]
    notes = []
    left_out = [t for t in selection.tasks if t not in tasks]
    if left_out:
        notes.append(
            f"the aggregates leave out the task(s) {', '.join(left_out)}, which not every group ran."
        )
    scores, runs = {}, {}
    for group in groups:
        per_task = [selection.runs_of(task, group) for task in tasks]
        n = min((len(r) for r in per_task), default=0)
        if any(len(r) != n for r in per_task):
            counts = ", ".join(f"{t}: {len(r)}" for t, r in zip(tasks, per_task, strict=True))
            notes.append(
                f"group {group} has different numbers of runs per task ({counts}); its aggregates use "
                f"its first {n} runs (in seed order) of each task, as the stratified bootstrap needs equal "
                f"counts."
            )
        runs[group] = [r[:n] for r in per_task]
        scores[group] = np.array(
            [
                [normalisations[t](r.final) for r in task_runs]
                for t, task_runs in zip(tasks, runs[group], strict=True)
            ]
        ).T.reshape(n, len(tasks))
    return ScoreMatrix(tasks, scores, runs, notes)


def _aggregates(scores: np.ndarray) -> np.ndarray:
    return np.array(
        [
            metrics.aggregate_iqm(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_optimality_gap(scores),
        ]
    )


@dataclasses.dataclass(frozen=True)
class Aggregate:
    group: str
    statistic: str  # one of AGGREGATES
    value: float
    low: float
    high: float


def aggregates(matrix: ScoreMatrix, reps: int, seed: int) -> list[Aggregate]:
    """IQM, mean, median and optimality gap (γ = 1) of normalised scores, with stratified-bootstrap CIs."""
    point, ci = _interval_estimates(matrix.scores, _aggregates, reps, seed)
    return [
        Aggregate(g, name, float(point[g][i]), float(ci[g][0, i]), float(ci[g][1, i]))
        for g in matrix.scores
        for i, name in enumerate(AGGREGATES)
    ]


@dataclasses.dataclass(frozen=True)
class Improvement:
    """P(X > Y): the probability that a run of X beats a run of Y on a task, averaged over tasks."""

    x: str
    y: str
    probability: float
    low: float
    high: float


def probabilities_of_improvement(matrix: ScoreMatrix, reps: int, seed: int) -> list[Improvement]:
    """P(X > Y) for every pair of groups (both orders), with rliable's independent stratified bootstrap."""
    groups = list(matrix.scores)
    pairs = {(x, y): [matrix.scores[x], matrix.scores[y]] for x in groups for y in groups if x != y}
    if not pairs:
        return []
    keyed = {f"{x}\0{y}": scores for (x, y), scores in pairs.items()}
    point, ci = _interval_estimates(keyed, metrics.probability_of_improvement, reps, seed)
    return [
        Improvement(x, y, float(point[key]), float(np.ravel(ci[key])[0]), float(np.ravel(ci[key])[1]))
        for key, (x, y) in zip(keyed, pairs, strict=True)
    ]


@dataclasses.dataclass
class Profiles:
    """Performance profiles: the fraction of runs (all tasks) with normalised score > τ.

    Shapes: ``taus`` ``[K]``; ``profiles[group]`` ``[K]``; ``intervals[group]`` ``[2, K]``.
    """

    taus: np.ndarray
    profiles: dict[str, np.ndarray]
    intervals: dict[str, np.ndarray]


def performance_profiles(matrix: ScoreMatrix, reps: int, seed: int) -> Profiles:
    every = np.concatenate([s.ravel() for s in matrix.scores.values()])
    taus = np.linspace(min(0.0, every.min()), max(1.0, every.max()), PROFILE_POINTS)
    profiles, intervals = {}, {}
    for group, scores in matrix.scores.items():  # one group at a time, as _interval_estimates
        with seeded(seed):
            profile, interval = library.create_performance_profile(
                {group: scores}, taus, reps=reps, confidence_interval_size=CONFIDENCE
            )
        profiles[group], intervals[group] = profile[group], interval[group]
    return Profiles(taus, profiles, intervals)


def sample_efficiency(
    matrix: ScoreMatrix, normalisations: dict[str, Normalisation], reps: int, seed: int
) -> tuple[list[Curve], str | None]:
    """IQM of normalised scores over runs and tasks against frames, with stratified-bootstrap bands; on the
    frames every run of the aggregate reached. The second result says why there are none, if so."""
    everyone = [r for task_runs in matrix.runs.values() for runs in task_runs for r in runs]
    frames = frame_grid(everyone) if everyone else np.empty(0)
    if len(frames) == 0:
        return [], "no frames that every run of the aggregate reached; no sample-efficiency curves."
    scores = {
        group: np.stack(
            [
                normalisations[t](resample(runs, frames))
                for t, runs in zip(matrix.tasks, task_runs, strict=True)
            ],
            axis=1,
        )
        for group, task_runs in matrix.runs.items()
    }  # [n, T, P]
    iqm, ci = _interval_estimates(scores, _iqm_per_point, reps, seed)
    curves = []
    for group, values in scores.items():
        mean, low, high = t_interval(values.mean(axis=1))  # the mean over tasks, per run
        curves.append(
            Curve("all tasks", group, values.shape[0], frames, mean, low, high, iqm[group], *ci[group])
        )
    return curves, None
