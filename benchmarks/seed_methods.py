"""Benchmark of the seed-paper methods (SVD projection, PGU, L2UL) against the retrained reference.

The suite's `methods` scenario (`python -m benchmarks run methods`) runs these methods next to the
peers under one protocol; this standalone entry point keeps the per-method target checks of the
seed-method issues (its results section in BENCHMARKS.md is an earlier run).

    python -m benchmarks.seed_methods --quick      # digits 1 seed + Fashion-MNIST 1 seed, small
    python -m benchmarks.seed_methods              # digits 5 seeds + Fashion-MNIST subset

Per dataset and seed: train the small CNN with the project recipe (cosine SGD, 20 epochs), store
its layer statistics, then
  * SVD projection: forget class (seed mod 10); forget-class / retain-class test accuracy vs the
    original model and vs a model retrained without the class;
  * PGU: forget 10% random training samples; forget / retain / test accuracy vs the retrain;
  * L2UL (goal misclassify): forget k random instances (nested sets); forget accuracy and the test
    drop from the original; one retrain without the largest set is the reference for every k
    (it differs from the per-k retrain by at most k - 16 samples);
  * the baselines (FT, GA, NegGrad+, RL) on the 10% request, where `--baselines` asks for them.
Wall time of each method is compared with the retrain's. Results go to
benchmarks/results/seed_methods.{json,md}. Single-threaded torch (shared machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"

COST_NOTES = [
    "L2UL's one-off cost is k x 20 adversarial examples x 100 PGD steps = 2,000 k forward+backward passes; a retrain here is "
    "epochs x n = 20 x 1,295 (digits) or 20 x 5,000 (Fashion-MNIST subset) sample passes, so building the adversarial set alone costs "
    "about k / 13 (digits) or k / 50 (Fashion-MNIST) retrains: over 5% of a retrain for every k >= 1 on digits and k >= 3 on the subset. The paper's "
    "5% regime holds at CIFAR scale (50,000 images x 200 epochs: 128 instances cost 2.6%).",
    "PGU runs up to 100 epochs over the forget set with an evaluation of the forget and validation sets after each; the data-removal "
    "rule stops once validation accuracy exceeds forget accuracy, which never happens when the retrained model itself classifies the "
    "forgotten samples as well as the training set (digits: forget accuracy 100% after retraining).",
]

TARGETS = {
    "svd_projection": "forget-class test acc <= 1%; retain-class test acc >= original - 2; time <= 2% of retrain",
    "pgu": "forget, retain, test acc each within 2 points of the retrain; time <= 10% of retrain",
    "l2ul": "forget acc = 0%; test drop <= 2 points from the original; time <= 5% of retrain",
}


def acc(model, split, mask=None) -> float:
    from forgetflow.methods._fixtures import take
    from forgetflow.training import evaluate

    return evaluate(model, split if mask is None else take(split, mask))["accuracy"]


def run_seed(splits, seed: int, *, width: int, epochs: int, l2ul_ks: list[int], baselines: bool, log) -> list[dict]:
    from forgetflow.layer_stats import compute_layer_stats
    from forgetflow.methods import unlearn
    from forgetflow.methods._fixtures import take, train_small
    from forgetflow.params import TrainParams

    rows: list[dict] = []
    recipe = TrainParams(epochs=epochs, seed=seed).model_dump()
    trained = train_small(splits, width=width, epochs=epochs, seed=seed)
    original = trained.model
    stats_started = time.perf_counter()
    stats = compute_layer_stats(original, splits.train.images)
    log(f"  seed {seed}: original trained in {trained.seconds:.1f}s (test {acc(original, splits.test):.2f}%), stats {time.perf_counter() - stats_started:.1f}s")
    train, test = splits.train, splits.test
    rng = np.random.default_rng(1000 + seed)

    # --- SVD projection: one class --------------------------------------------------------
    c = seed % 10
    forget_mask = train.labels == c
    forget, retain = take(train, forget_mask), take(train, ~forget_mask)
    test_forget = test.labels == c
    ref = unlearn("retrain", original, forget, retain=retain, config=recipe, seed=seed, progress=False)
    svd = unlearn("svd_projection", original, forget, retain=retain, val=splits.val, kind="classes", seed=seed, time_budget_s=ref.seconds, progress=False)
    base = {"request": f"class {c}", "seed": seed, "retrain_seconds": ref.seconds}
    for name, model, seconds, config in (("original", original, None, None), ("retrain", ref.model, ref.seconds, None), ("svd_projection", svd.model, svd.seconds, {k: svd.config[k] for k in ("alpha_r", "alpha_f")})):
        rows.append({**base, "method": name, "forget_test_acc": acc(model, test, test_forget), "retain_test_acc": acc(model, test, ~test_forget), "test_acc": acc(model, test), "seconds": seconds, "config": config})
    log(f"  seed {seed}: svd class {c}: forget {rows[-1]['forget_test_acc']:.2f} retain {rows[-1]['retain_test_acc']:.2f} ({svd.seconds:.2f}s vs retrain {ref.seconds:.1f}s)")

    # --- PGU (and baselines): 10% random samples ---------------------------------------------
    picked = rng.choice(len(train.labels), len(train.labels) // 10, replace=False)
    forget_mask = np.zeros(len(train.labels), bool)
    forget_mask[picked] = True
    forget, retain = take(train, forget_mask), take(train, ~forget_mask)
    ref = unlearn("retrain", original, forget, retain=retain, config=recipe, seed=seed, progress=False)
    base = {"request": "10% random", "seed": seed, "retrain_seconds": ref.seconds}
    runs = [("original", original, None, None), ("retrain", ref.model, ref.seconds, None)]
    pgu = unlearn("pgu", original, forget, val=splits.val, stats=stats, seed=seed, time_budget_s=ref.seconds, progress=False)
    runs.append(("pgu", pgu.model, pgu.seconds, {"epochs_run": pgu.log[-1]["epoch"], "stopped": pgu.stopped_because}))
    if baselines:
        for name in ("finetune", "gradient_ascent", "neggrad_plus", "random_labels"):
            result = unlearn(name, original, forget, retain=retain, seed=seed, time_budget_s=ref.seconds, progress=False)
            runs.append((name, result.model, result.seconds, None))
    for name, model, seconds, config in runs:
        rows.append({**base, "method": name, "forget_acc": acc(model, forget), "retain_acc": acc(model, retain), "test_acc": acc(model, test), "seconds": seconds, "config": config})
    pgu_row = next(r for r in rows if r["method"] == "pgu" and r["seed"] == seed)
    log(f"  seed {seed}: pgu: forget {pgu_row['forget_acc']:.2f} retain {pgu_row['retain_acc']:.2f} test {pgu_row['test_acc']:.2f} ({pgu.seconds:.1f}s, {pgu.stopped_because})")

    # --- L2UL: k instances, goal misclassify ---------------------------------------------------
    order = rng.permutation(len(train.labels))
    largest = max(l2ul_ks)
    forget_mask = np.zeros(len(train.labels), bool)
    forget_mask[order[:largest]] = True
    ref = unlearn("retrain", original, take(train, forget_mask), retain=take(train, ~forget_mask), config=recipe, seed=seed, progress=False)
    for k in l2ul_ks:
        forget = take(train, order[:k])
        result = unlearn("l2ul", original, forget, goal="misclassify", seed=seed, time_budget_s=ref.seconds, progress=False)
        base = {"request": f"{k} instances", "seed": seed, "retrain_seconds": ref.seconds}
        retain_mask = np.ones(len(train.labels), bool)
        retain_mask[order[:k]] = False
        for name, model, seconds, config in (("original", original, None, None), ("retrain", ref.model, ref.seconds, {"note": f"retrained without the {largest}-instance set"}), ("l2ul", result.model, result.seconds, {"eps": result.config["eps"], "steps": result.extra["steps"], "stopped": result.stopped_because})):
            rows.append({**base, "method": name, "forget_acc": acc(model, forget), "retain_acc": acc(model, train, retain_mask), "test_acc": acc(model, test), "seconds": seconds, "config": config})
        log(f"  seed {seed}: l2ul k={k}: forget {rows[-1]['forget_acc']:.2f} test {rows[-1]['test_acc']:.2f} (orig {rows[-3]['test_acc']:.2f}) {result.seconds:.1f}s, {result.stopped_because}")
    return rows


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean +- std per (request, method) and the target check for the seed methods."""
    out = []
    keys = sorted({(r["request"] if not r["request"].startswith("class") else "1 class", r["method"]) for r in rows}, key=lambda t: (t[0], t[1]))
    for request, method in keys:
        group = [r for r in rows if (r["request"] if not r["request"].startswith("class") else "1 class") == request and r["method"] == method]
        entry = {"request": request, "method": method, "n_seeds": len(group)}
        for metric in ("forget_test_acc", "retain_test_acc", "forget_acc", "retain_acc", "test_acc", "seconds"):
            if metric in group[0]:
                entry[metric] = mean_std([g[metric] for g in group])
        ratios = [g["seconds"] / g["retrain_seconds"] for g in group if g["seconds"] is not None]
        entry["time_vs_retrain"] = mean_std(ratios)
        entry["target"], entry["met"], entry["misses"] = check_target(method, group, rows)
        out.append(entry)
    return out


def _partner(rows, row, method):
    return next(r for r in rows if r["seed"] == row["seed"] and r["request"] == row["request"] and r["method"] == method)


def check_target(method: str, group: list[dict], rows: list[dict]):
    if method not in TARGETS:
        return None, None, []
    misses = []
    for row in group:
        ratio = row["seconds"] / row["retrain_seconds"]
        if method == "svd_projection":
            orig = _partner(rows, row, "original")
            if row["forget_test_acc"] > 1:
                misses.append(f"seed {row['seed']}: forget-class acc {row['forget_test_acc']:.2f}% > 1%")
            if row["retain_test_acc"] < orig["retain_test_acc"] - 2:
                misses.append(f"seed {row['seed']}: retain-class acc {row['retain_test_acc']:.2f}% is {orig['retain_test_acc'] - row['retain_test_acc']:.2f} below the original (> 2)")
            limit = 0.02
        elif method == "pgu":
            ref = _partner(rows, row, "retrain")
            for metric in ("forget_acc", "retain_acc", "test_acc"):
                if abs(row[metric] - ref[metric]) > 2:
                    misses.append(f"seed {row['seed']}: {metric} {row[metric]:.2f} vs retrain {ref[metric]:.2f} (|diff| {abs(row[metric] - ref[metric]):.2f} > 2)")
            limit = 0.10
        else:
            orig = _partner(rows, row, "original")
            if row["forget_acc"] > 0:
                misses.append(f"{row['request']} seed {row['seed']}: forget acc {row['forget_acc']:.2f}% > 0")
            if orig["test_acc"] - row["test_acc"] > 2:
                misses.append(f"{row['request']} seed {row['seed']}: test drop {orig['test_acc'] - row['test_acc']:.2f} > 2")
            limit = 0.05
        if ratio > limit:
            misses.append(f"{row['request']} seed {row['seed']}: time {100 * ratio:.1f}% of retrain > {100 * limit:.0f}%")
    return TARGETS[method], not misses, misses


def fmt(pair) -> str:
    mean, std = pair
    return "n/a" if mean != mean else f"{mean:.2f} ± {std:.2f}"


def render_markdown(result: dict) -> str:
    lines = ["# Seed-paper methods vs the retrained reference", "", f"Command: `{result['command']}`", "", f"Machine: {result['machine']}", ""]
    for dataset in result["datasets"]:
        lines += [f"## {dataset['name']}", "", dataset["setup"], ""]
        lines += ["| request | method | seeds | forget acc | retain acc | test acc | seconds | time / retrain | target met |", "|---|---|---|---|---|---|---|---|---|"]
        for e in dataset["summary"]:
            forget = e.get("forget_test_acc", e.get("forget_acc"))
            retain = e.get("retain_test_acc", e.get("retain_acc"))
            ratio = e["time_vs_retrain"]
            ratio_text = "n/a" if ratio[0] != ratio[0] else f"{100 * ratio[0]:.1f}%"
            met = "" if e["met"] is None else ("yes" if e["met"] else "**no**")
            lines.append(f"| {e['request']} | {e['method']} | {e['n_seeds']} | {fmt(forget)} | {fmt(retain)} | {fmt(e['test_acc'])} | {fmt(e['seconds'])} | {ratio_text} | {met} |")
        lines.append("")
        lines.append("For the class request, forget/retain accuracy are on the forget/retain classes of the test split; otherwise on the forget set and the retained training data.")
        lines.append("")
        for e in dataset["summary"]:
            if e["misses"]:
                lines.append(f"- {e['method']} ({e['request']}) target: {e['target']}. Misses: " + "; ".join(e["misses"]))
        lines.append("")
    lines += ["## Notes", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def machine() -> str:
    import os

    return f"{platform.platform()}, {os.cpu_count()} CPUs visible (shared), torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), device cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 seed per dataset, small Fashion-MNIST subset, k = 16 only")
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    parser.add_argument("--seeds", type=int, default=None, help="seeds for digits (default 5, quick 1)")
    parser.add_argument("--fmnist-seeds", type=int, default=None, help="seeds for Fashion-MNIST (default 3, quick 1)")
    parser.add_argument("--fmnist-train", type=int, default=None, help="Fashion-MNIST training subset (default 5000, quick 2000)")
    parser.add_argument("--epochs", type=int, default=20, help="training recipe epochs (original and retrain)")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from forgetflow.methods._fixtures import make_splits

    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {message}", flush=True)

    plans = {
        "digits": {"source": "digits", "seeds": args.seeds or (1 if args.quick else 5), "train_size": None, "test_size": None, "width": 32, "ks": [16] if args.quick else [16, 64, 128], "baselines": not args.no_baselines},
        "fashion-mnist": {"source": "fashion-mnist", "seeds": args.fmnist_seeds or (1 if args.quick else 3), "train_size": args.fmnist_train or (2000 if args.quick else 5000), "test_size": 2000, "width": 16, "ks": [16] if args.quick else [16, 64], "baselines": False},
    }
    datasets = []
    for name in args.datasets:
        plan = plans[name]
        splits = make_splits(plan["source"], seed=0, train_size=plan["train_size"], test_size=plan["test_size"])
        setup = (
            f"small_cnn width {plan['width']}, recipe: SGD lr 0.05 cosine, {args.epochs} epochs, batch 64; train/val/test = "
            f"{len(splits.train.labels)}/{len(splits.val.labels)}/{len(splits.test.labels)} images; seeds {list(range(plan['seeds']))}; L2UL k = {plan['ks']}"
        )
        log(f"{name}: {setup}")
        rows = []
        for seed in range(plan["seeds"]):
            rows += run_seed(splits, seed, width=plan["width"], epochs=args.epochs, l2ul_ks=plan["ks"], baselines=plan["baselines"], log=log)
        datasets.append({"name": name, "setup": setup, "rows": rows, "summary": summarise(rows)})
    command = "python -m benchmarks.seed_methods " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {
        "command": command.strip(),
        "machine": machine(),
        "wall_seconds": time.perf_counter() - started,
        "targets": TARGETS,
        "datasets": datasets,
        "notes": [
            "Fashion-MNIST uses a stratified subset of the official train split (and 2,000 test images) and width 16, because a full 60k x 20-epoch retrain per request does not fit 2 shared CPU cores.",
            "Times are single-threaded CPU wall seconds; the retrain is the reference's full training run with the same recipe.",
            "Every unlearning call gets a time budget equal to its request's retrain time (a method slower than retraining has no point); a run cut by the budget says so in its config.stopped.",
            "L2UL eps is chosen per request from {1,...,5} (the README's re-tuning range) as the smallest radius whose targeted attack succeeds on >= 90% of a probe; see forgetflow/methods/l2ul.py.",
            *COST_NOTES,
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seed_methods.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (args.out / "seed_methods.md").write_text(render_markdown(result))
    log(f"wrote {args.out / 'seed_methods.json'} and seed_methods.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
