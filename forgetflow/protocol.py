"""Hyperparameter grids and selection rules of the benchmark protocol, shared by `forgetflow calibrate`.

The selection functions take validation metrics only: a list of (config, metrics measured with the
validation split as held-out data) and the reference's metrics measured the same way. Nothing here
can see test data, so the reported test numbers are computed once, after selection.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from forgetflow.evaluation.metrics import avg_gap


def grid(defaults: Mapping, search_space: Mapping[str, Sequence], max_points: int, keys: int = 2) -> list[dict]:
    """The paper default first ({}), then the product of the first `keys` search-space entries,
    evenly thinned to `max_points` in all (deterministic: the same registry gives the same grid)."""
    names = list(search_space)[:keys]
    combos = [dict(zip(names, values)) for values in itertools.product(*(search_space[k] for k in names))]
    distinct = [c for c in combos if any(defaults.get(k) != v for k, v in c.items())]
    room = max(0, max_points - 1)
    if len(distinct) > room:
        distinct = [distinct[i] for i in np.unique(np.linspace(0, len(distinct) - 1, room).round().astype(int))] if room else []
    return [{}] + distinct


def short_grid(defaults: Mapping, search_space: Mapping[str, Sequence], max_points: int) -> list[dict]:
    """The grid of the time-budget scenario: the paper default, then the method's first
    hyperparameter's values with 1 and 2 epochs (a budget of a tenth of a retrain leaves room for
    about one pass over the retain set), then the usual grid; `max_points` in all."""
    if "epochs" not in defaults:
        return grid(defaults, search_space, max_points)
    first = next((k for k in search_space if k != "epochs"), None)
    points = [{}] + ([{first: v, "epochs": e} for e in (1, 2) for v in search_space[first]] if first else [{"epochs": e} for e in (1, 2)])
    rest = [p for p in grid(defaults, search_space, 3)[1:] if p not in points]
    short, room = points[1:], max(0, max_points - 1 - len(rest))
    if len(short) > room:
        short = [short[i] for i in np.unique(np.linspace(0, len(short) - 1, room).round().astype(int))] if room else []
    return ([{}] + short + rest)[:max_points]


def within_time(candidates: Sequence[tuple[dict, Mapping[str, float]]], max_ratio: float) -> list[tuple[dict, Mapping[str, float]]]:
    """The candidates whose tuning run took at most `max_ratio` of the tuning seed's retrain; all of
    them if none did (then the selection still returns the closest config, and the table shows its
    measured time)."""
    fits = [c for c in candidates if c[1].get("time_ratio", 0.0) <= max_ratio]
    return fits or list(candidates)


def select_by_avg_gap(candidates: Sequence[tuple[dict, Mapping[str, float]]], reference_val: Mapping[str, float]) -> tuple[dict, float] | None:
    """The config whose validation metrics have the smallest Avg. Gap to the reference's validation
    metrics (OPTML protocol). Ties keep the earlier candidate (the paper default comes first)."""
    best = None
    for config, val_metrics in candidates:
        gap = avg_gap(val_metrics, reference_val)
        if not math.isnan(gap) and (best is None or gap < best[1]):
            best = (config, gap)
    return best


def select_misclassify(candidates: Sequence[tuple[dict, Mapping[str, float]]], original_val_accuracy: float, max_drop: float = 2.0) -> tuple[dict, float] | None:
    """The goal's own criterion for `misclassify` (issue 4's target: every instance flipped at most
    `max_drop` points of validation accuracy below the original). Among the configs within the
    bound, the lowest forget accuracy, then the least drop; if none stays within it, the least drop,
    then the lowest forget accuracy: a model that flips every instance but is wrecked must not beat
    a sound one that flips most. Returns (config, validation-accuracy drop)."""
    scored = []
    for config, val_metrics in candidates:
        forget, drop = float(val_metrics["forget_accuracy"]), original_val_accuracy - float(val_metrics["test_accuracy"])
        if not (math.isnan(forget) or math.isnan(drop)):
            scored.append((config, forget, drop))
    if not scored:
        return None
    within = [c for c in scored if c[2] <= max_drop]
    best = min(within, key=lambda c: (c[1], c[2])) if within else min(scored, key=lambda c: (c[2], c[1]))
    return best[0], best[2]

