"""Calibration: choose the method ladders on the user's own model and data.

    calibrate(original, spec, recipe, train=..., val=..., subjects=..., eval_params=...) -> Calibration

The published methods' defaults were tuned on other models; whether a method's candidate passes
forgetflow's gate depends on the user's architecture, data and recipe. So calibration asks the
workspace itself:

1. **Proxy requests** are drawn from the train split, one per kind the product serves: a random
   10% of the samples, a few subjects, one whole class, k instances to misclassify and k to
   relabel (new label: a random other class). They are never executed: nothing is deleted.
2. **One proxy reference per forget proxy** is retrained from scratch on the rest of the train
   split with the workspace's own recipe (misclassify and relabel are judged against the
   original, so they need none).
3. **The shipped ladder's rungs, then each candidate method's search space** (the paper default
   first, then short configs: a ladder rung must be cheap; for goal forget also the paper default
   followed by the repair step) run under the benchmark protocol: the validation split stands in
   for the test split, so selection never sees test data. Every config is judged by the same gate
   as a real batch (`params.yaml` `evaluation.gate`), and its Avg. Gap to the proxy reference and
   its time relative to the proxy retrain are recorded.
4. **The ladder** per (kind, goal): methods whose config passed the gate within the time limit,
   best first (the smallest Avg. Gap to the reference for goal forget, the smallest accuracy drop
   for misclassify/relabel; then the fastest), each with its selected config and a time budget of
   a few times its measured time. The policy puts the shipped rungs it did not pick after them. A
   kind with no passing method gets no calibrated ladder: the shipped one applies, and the notes
   say why.

Nothing here imports Prefect, MLflow or DVC; `flows/calibrate.py` runs it on a workspace and
records the result (`.forgetflow/calibration.json`, an MLflow run with the table and a plot).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from forgetflow.data.store import LoadedSplit

PROXY_KINDS = ("samples", "subjects", "classes", "misclassify", "relabel")
REPAIR_EPOCHS = 2  # the repair step tried after each candidate's paper default (goal forget)

# Methods tried per proxy (kind, goal). Fast, retain-aware peers come first; the seed papers'
# methods stay candidates, so calibration shows where they pass on this model and where not.
CANDIDATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("samples", "forget"): ("scrub", "neggrad_plus", "salun", "l1_sparse", "finetune", "pgu"),
    ("subjects", "forget"): ("scrub", "neggrad_plus", "salun", "l1_sparse", "finetune", "pgu"),
    ("classes", "forget"): ("svd_projection", "scrub", "neggrad_plus", "salun", "random_labels", "pgu"),
    ("samples", "misclassify"): ("neggrad_plus", "l2ul"),
    ("samples", "relabel"): ("neggrad_plus", "l2ul"),
}


@dataclass
class Proxy:
    """A deletion request that is only evaluated, never executed."""

    name: str  # samples | subjects | classes | misclassify | relabel
    kind: str  # the request kind it stands for
    goal: str
    forget_index: np.ndarray  # positions in the train split
    new_labels: np.ndarray | None = None  # relabel only, one per forget position
    description: str = ""


@dataclass
class Trial:
    proxy: str
    kind: str
    goal: str
    method: str
    config: dict  # overrides of the paper defaults ({} = the paper default)
    passed: bool
    reason: str
    seconds: float
    time_ratio: float  # seconds / the proxy retrain's seconds (nan without a reference)
    score: float  # Avg. Gap to the proxy reference (forget) or validation-accuracy drop (misclassify/relabel)
    within_time: bool
    error: str = ""


@dataclass
class Calibration:
    ladders: dict[str, dict[str, list[dict]]]
    proxies: list[dict]
    trials: list[Trial]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def table(self) -> list[dict]:
        return [asdict(t) for t in self.trials]


def draw_proxies(train: LoadedSplit, subjects: np.ndarray | None, *, seed: int = 0, kinds=PROXY_KINDS, sample_fraction: float = 0.1, n_subjects: int = 5, k: int = 16) -> list[Proxy]:
    """Proxy requests drawn from the train split, deterministic for a seed. `subjects` holds the
    subject ID of each train sample (None: the subjects proxy is skipped)."""
    rng = np.random.default_rng(seed)
    n = len(train.labels)
    classes = np.unique(train.labels)
    proxies = []
    for name in kinds:
        if name == "samples":
            size = max(1, int(round(sample_fraction * n)))
            index = np.sort(rng.choice(n, size=size, replace=False))
            proxies.append(Proxy(name, "samples", "forget", index, description=f"{size} random train samples ({sample_fraction:.0%})"))
        elif name == "subjects":
            if subjects is None or len(np.unique(subjects)) < 2:
                continue
            # At least `n_subjects`, and enough to hold ~5 % of the train split: on a handful of
            # samples one sample moves forget accuracy by more than the gate's threshold.
            order = rng.permutation(np.unique(subjects))
            owned = np.cumsum([np.count_nonzero(subjects == s) for s in order])
            count = min(len(order) - 1, max(n_subjects, int(np.searchsorted(owned, 0.05 * n)) + 1))
            chosen = order[:count]
            index = np.flatnonzero(np.isin(subjects, chosen))
            proxies.append(Proxy(name, "subjects", "forget", index, description=f"{len(chosen)} subjects ({len(index)} train samples)"))
        elif name == "classes":
            if len(classes) < 3:
                continue
            label = int(rng.choice(classes))
            proxies.append(Proxy(name, "classes", "forget", np.flatnonzero(train.labels == label), description=f"class {label}"))
        elif name in ("misclassify", "relabel"):
            size = min(k, max(1, n // 20))
            index = np.sort(rng.choice(n, size=size, replace=False))
            new_labels = None
            if name == "relabel":
                shift = rng.integers(1, len(classes), size=size)
                position = np.searchsorted(classes, train.labels[index])
                new_labels = classes[(position + shift) % len(classes)].astype(np.int64)
            proxies.append(Proxy(name, "samples", name, index, new_labels, description=f"{size} train instances to {name}"))
        else:
            raise ValueError(f"unknown proxy kind {name!r}; choose from {', '.join(PROXY_KINDS)}")
    return proxies


def _take(split: LoadedSplit, index: np.ndarray) -> LoadedSplit:
    return LoadedSplit(split.images[index], split.labels[index], split.sample_ids[index])


def trial_plan(kind: str, goal: str, candidates, max_configs: int, notes: list[str], proxy: str) -> list[tuple[str, dict]]:
    """(method, config) pairs to try: the shipped ladder's rungs first (so a calibrated ladder is
    never chosen from less than the shipped one), then each candidate method's paper default and
    short configs from its search space, and for goal forget its paper default followed by the
    repair step (`repair_epochs`); duplicates once."""
    from forgetflow.deletion.policy import SHIPPED_LADDERS
    from forgetflow.errors import ForgetflowError
    from forgetflow.methods import get_method

    plan: list[tuple[str, dict]] = []
    shipped = SHIPPED_LADDERS.get(kind, {}).get(goal, [])
    pairs = [(r["method"], dict(r.get("config") or {})) for r in shipped]
    for method in candidates.get((kind, goal), ()):
        try:
            info = get_method(method)
        except ForgetflowError as exc:
            notes.append(f"{proxy}: {method} skipped ({exc.message})")
            continue
        if not info.serves(kind, goal):
            notes.append(f"{proxy}: {method} does not serve {kind}/{goal}")
            continue
        pairs += [(method, config) for config in candidate_configs(info, max_configs)]
        if goal == "forget":  # the paper default followed by forgetflow's repair step
            pairs.append((method, {"repair_epochs": REPAIR_EPOCHS}))
    for method, config in pairs:
        if (method, config) not in plan:
            plan.append((method, config))
    return plan


def candidate_configs(info, max_configs: int) -> list[dict]:
    """The paper default, then short configs from the method's search space (protocol.short_grid)."""
    from forgetflow.protocol import short_grid

    return short_grid(info.defaults, info.search_space, max_configs)


def calibrate(
    original,
    spec,
    recipe,
    *,
    train: LoadedSplit,
    val: LoadedSplit,
    subjects: np.ndarray | None,
    eval_params,
    stats=None,
    kinds=PROXY_KINDS,
    candidates: dict[tuple[str, str], tuple[str, ...]] | None = None,
    max_configs: int = 3,
    max_time_ratio: float = 0.25,
    max_rungs: int = 3,
    retain_sample_size: int = 2000,
    seed: int = 0,
    reference_seed: int = 1,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Calibration:
    """Run the proxies and return the selected ladders with every trial's record."""
    from forgetflow.training import train_model

    started = time.perf_counter()
    candidates = candidates or CANDIDATES
    trials, proxies_out, notes = [], [], []
    ladders: dict[str, dict[str, list[dict]]] = {}
    retrain_seconds = None  # wall time of a retrain on this workspace: the yardstick of a rung's time
    for proxy in draw_proxies(train, subjects, seed=seed, kinds=kinds):
        keep = np.ones(len(train.labels), dtype=bool)
        keep[proxy.forget_index] = False
        forget, retain_all = _take(train, proxy.forget_index), _take(train, np.flatnonzero(keep))
        reference, reference_seconds = None, float("nan")
        if proxy.goal == "forget":
            log(f"[calibrate] {proxy.name}: retraining the proxy reference without {proxy.description}")
            trained = train_model(spec, recipe, retain_all, val, device=device, seed=reference_seed, progress=progress)
            reference, reference_seconds = trained.model, trained.seconds
            retrain_seconds = trained.seconds
        elif retrain_seconds is None:  # misclassify/relabel alone: time one retrain to bound the trials
            log(f"[calibrate] timing one retrain to bound the {proxy.name} trials")
            retrain_seconds = train_model(spec, recipe, retain_all, val, device=device, seed=reference_seed, progress=progress).seconds
        proxies_out.append({"name": proxy.name, "kind": proxy.kind, "goal": proxy.goal, "description": proxy.description, "n_forget": int(len(proxy.forget_index)), "reference_seconds": reference_seconds})
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(retain_all.labels), size=min(retain_sample_size, len(retain_all.labels)), replace=False))
        retain = _take(retain_all, pick)
        cache: dict = {}
        for method, config in trial_plan(proxy.kind, proxy.goal, candidates, max_configs, notes, proxy.name):
            trial = _trial(
                proxy, method, config, original, forget, retain, retain_all, val, stats, reference, retrain_seconds,
                eval_params, cache, seed, device, max_time_ratio,
            )
            trials.append(trial)
            verdict = "pass" if trial.passed else "fail"
            log(f"[calibrate] {proxy.name}: {method} {config or '(paper default)'}: {verdict} in {trial.seconds:.1f} s ({trial.reason[:120]})")
        rungs = select_ladder([t for t in trials if t.proxy == proxy.name], max_rungs=max_rungs)
        if rungs:
            for kind in (("samples", "subjects") if proxy.name in ("misclassify", "relabel") else (proxy.kind,)):
                ladders.setdefault(kind, {})[proxy.goal] = rungs
        else:
            notes.append(f"{proxy.name}: no candidate passed the gate within {max_time_ratio:.0%} of the proxy retrain; the shipped ladder stays in force")
    return Calibration(ladders=ladders, proxies=proxies_out, trials=trials, notes=notes, seconds=time.perf_counter() - started)


def _trial(proxy, method, config, original, forget, retain, retain_all, val, stats, reference, retrain_seconds, eval_params, cache, seed, device, max_time_ratio) -> Trial:
    from forgetflow.errors import ForgetflowError
    from forgetflow.evaluation.evaluate import evaluate_candidate
    from forgetflow.ladder import relabel_inputs
    from forgetflow.methods import unlearn

    # A trial may run to twice the time a rung is allowed: its record then says it was too slow.
    budget = 2 * max_time_ratio * retrain_seconds
    try:
        method_forget, method_config = relabel_inputs(method, forget, config, proxy.new_labels) if proxy.goal == "relabel" else (forget, config)
        result = unlearn(method, original, method_forget, retain=retain, val=val, stats=stats, config=method_config, seed=seed, device=device, kind=proxy.kind, goal=proxy.goal, time_budget_s=budget, progress=False)
    except ForgetflowError as exc:
        return Trial(proxy.name, proxy.kind, proxy.goal, method, config, False, f"could not run: {exc.message}", 0.0, float("nan"), float("nan"), False, exc.message)
    # The validation split stands in for the test split: selection never sees test data.
    try:
        evaluation = evaluate_candidate(
            original, result.model, reference, forget=forget, retain=retain_all, val=val, test=val,
            request_kind=proxy.kind, goal=proxy.goal, forget_classes=np.unique(forget.labels) if proxy.kind == "classes" else None,
            new_labels=proxy.new_labels, params=eval_params, candidate_seconds=result.seconds, reference_seconds=retrain_seconds if reference is not None else None,
            reference_required=reference is not None, device=device, outputs_cache=cache,
        )
    except (ValueError, FloatingPointError, RuntimeError) as exc:
        # A config that diverges (non-finite weights, NaN outputs) is a failed trial, as a rung of
        # the ladder is (forgetflow.ladder.climb), not the end of the calibration.
        from forgetflow.ladder import _finite

        why = "non-finite outputs: the method diverged" if not _finite(result.model) or "NaN" in str(exc) or "infinity" in str(exc) else str(exc)
        ratio = result.seconds / retrain_seconds if retrain_seconds > 0 else float("nan")
        return Trial(proxy.name, proxy.kind, proxy.goal, method, dict(config), False, f"REJECTED: the candidate could not be evaluated ({why})", float(result.seconds), float(ratio), float("nan"), not (ratio > max_time_ratio))
    candidate = evaluation.metrics["candidate"]
    from forgetflow.evaluation.metrics import avg_gap

    if reference is not None:
        score = avg_gap(candidate, evaluation.metrics["reference"])
    else:
        score = evaluation.metrics["original"]["test_accuracy"] - candidate["test_accuracy"]
    ratio = result.seconds / retrain_seconds if retrain_seconds > 0 else float("nan")
    within = not (ratio > max_time_ratio)
    return Trial(proxy.name, proxy.kind, proxy.goal, method, dict(config), bool(evaluation.decision.passed), evaluation.decision.reason, float(result.seconds), float(ratio), float(score), bool(within))


def select_ladder(trials: list[Trial], *, max_rungs: int = 3, budget_factor: float = 3.0, min_budget_s: float = 30.0) -> list[dict]:
    """Per method, its best passing config within the time limit; methods ordered best first."""
    best: dict[str, Trial] = {}
    for trial in trials:
        if not (trial.passed and trial.within_time and math.isfinite(trial.score)):
            continue
        current = best.get(trial.method)
        if current is None or (trial.score, trial.seconds) < (current.score, current.seconds):
            best[trial.method] = trial
    ordered = sorted(best.values(), key=lambda t: (round(t.score, 1), t.seconds))[:max_rungs]
    return [{"method": t.method, "config": t.config, "time_budget_s": round(max(min_budget_s, budget_factor * t.seconds), 1)} for t in ordered]


def plot_calibration(calibration: Calibration, path) -> object:
    """One panel per proxy: each trial's score (Avg. Gap or accuracy drop) against its time ratio,
    passing configs filled, failing ones hollow."""
    from pathlib import Path

    from forgetflow.plotting import pyplot

    plt = pyplot()
    names = [p["name"] for p in calibration.proxies]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 3.6), squeeze=False)
    methods = sorted({t.method for t in calibration.trials})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    for ax, name in zip(axes[0], names):
        proxy = next(p for p in calibration.proxies if p["name"] == name)
        for trial in (t for t in calibration.trials if t.proxy == name and math.isfinite(t.score) and math.isfinite(t.time_ratio)):
            ax.scatter([trial.time_ratio], [trial.score], s=40, color=colors[trial.method], facecolors=colors[trial.method] if trial.passed else "none", label=trial.method)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7)
        ax.set_title(f"{name}: {proxy['description']}", fontsize=9)
        ax.set_xlabel("time / retrain")
        ax.set_ylabel("Avg. Gap to reference (val)" if proxy["goal"] == "forget" else "val accuracy drop (points)")
        ax.grid(alpha=0.3)
    fig.suptitle("Calibration trials (filled: passed the gate)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
