"""Benchmark of the evaluation (issue 6), run once on CPU with one thread:

1. Fashion-MNIST, forget 10 % of the training split: wall time of `evaluate_candidate` for one
   candidate (every metric except the challenge score: three models' logits on all splits, three
   MIAs, closeness, gate) against the wall time of the reference retrain with the project recipe.
   Target: evaluation <= 20 % of the retrain.
2. The NeurIPS 2023 challenge score on digits (forget 10 %) with N = 32 unlearned and N = 32
   retrained models. Target: scoring <= 60 s.

    python -m benchmarks.evaluation [--part fashion|challenge|all] [--train-epochs 2]

On a 2-core machine the full 20-epoch Fashion-MNIST recipe takes over an hour per model, so the
original and the reference are trained for `--train-epochs` epochs and the full-recipe retrain time
is the measured per-epoch time x recipe epochs (each epoch of the recipe costs the same; the cosine
schedule changes only the learning rate). Evaluation time does not depend on how long the models
were trained. Both the measured and the extrapolated ratios are written.
Results: benchmarks/results/evaluation.json and evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from forgetflow.data.sources import load_source
from forgetflow.data.splits import assign_splits
from forgetflow.data.store import LoadedSplit
from forgetflow.evaluation import evaluate_candidate
from forgetflow.evaluation.challenge_score import challenge_score, logit_scaled_confidence
from forgetflow.params import Params
from forgetflow.training import model_spec_for, predict_logits, to_tensor, train_model

RESULTS = Path(__file__).resolve().parent / "results"


def load_splits(source: str, params: Params, forget_fraction: float, seed: int = 0) -> dict[str, LoadedSplit]:
    raw = load_source(source)
    splits = assign_splits(raw.labels, raw.official_split, val_fraction=params.data.val_fraction, test_fraction=params.data.test_fraction, seed=params.data.split_seed)
    take = lambda idx: LoadedSplit(raw.images[idx], raw.labels[idx], idx.astype(np.int64))  # noqa: E731
    train_idx = np.where(splits == "train")[0]
    forget_idx = np.sort(np.random.default_rng(seed).choice(train_idx, int(round(forget_fraction * len(train_idx))), replace=False))
    out = {
        "train": take(train_idx),
        "forget": take(forget_idx),
        "retain": take(np.setdiff1d(train_idx, forget_idx)),
        "val": take(np.where(splits == "val")[0]),
        "test": take(np.where(splits == "test")[0]),
    }
    images = raw.images[train_idx].astype(np.float64) / 255.0
    meta = {"image_shape": list(raw.images.shape[1:]), "class_names": raw.class_names, "mean": list(images.mean(axis=(0, 1, 2))), "std": list(images.std(axis=(0, 1, 2)))}
    return out, meta


def fine_tune(model, retain: LoadedSplit, *, seed: int, lr: float = 1e-3, epochs: int = 1, batch_size: int = 64):
    """The challenge's reference unlearning baseline (FT on retain, SGD lr 1e-3, momentum 0.9,
    wd 5e-4): a stand-in "unlearned" model for the benchmark, not a forgetflow method."""
    import copy

    model = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.from_numpy(retain.labels)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            loss = F.cross_entropy(model(to_tensor(retain.images[index.numpy()])), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    return model


def bench_fashion(train_epochs: int) -> dict:
    params = Params()
    data, meta = load_splits("fashion-mnist", params, 0.10)
    spec = model_spec_for(params.model, meta)
    recipe = params.train.model_copy(update={"epochs": train_epochs})
    print(f"fashion-mnist: train {len(data['train'].labels)}, forget {len(data['forget'].labels)}, test {len(data['test'].labels)}; training {train_epochs} epoch(s) per model", flush=True)
    original = train_model(spec, recipe, data["train"], data["val"], seed=params.train.seed, progress=True)
    reference = train_model(spec, recipe, data["retain"], data["val"], seed=1, progress=True)
    started = time.perf_counter()
    candidate = fine_tune(original.model, data["retain"], seed=0)
    candidate_seconds = time.perf_counter() - started
    retrain_full = reference.seconds / train_epochs * params.train.epochs

    started = time.perf_counter()
    cache: dict = {}
    evaluation = evaluate_candidate(
        original.model, candidate, reference.model, forget=data["forget"], retain=data["retain"], val=data["val"], test=data["test"],
        request_kind="samples", goal="forget", candidate_seconds=candidate_seconds, reference_seconds=retrain_full, outputs_cache=cache,
    )
    cold = time.perf_counter() - started
    started = time.perf_counter()
    evaluate_candidate(
        original.model, candidate, reference.model, forget=data["forget"], retain=data["retain"], val=data["val"], test=data["test"],
        request_kind="samples", goal="forget", candidate_seconds=candidate_seconds, reference_seconds=retrain_full, outputs_cache=cache,
    )
    warm = time.perf_counter() - started
    return {
        "dataset": "fashion-mnist",
        "sizes": evaluation.sizes,
        "recipe_epochs": params.train.epochs,
        "trained_epochs": train_epochs,
        "reference_retrain_seconds_measured": reference.seconds,
        "reference_retrain_seconds_full_recipe": retrain_full,
        "evaluation_seconds": cold,
        "evaluation_seconds_with_cached_original_and_reference": warm,
        "ratio_to_full_recipe_retrain": cold / retrain_full,
        "ratio_to_measured_retrain": cold / reference.seconds,
        "target_ratio": 0.20,
        "gate": evaluation.decision.reason,
        "candidate_metrics": evaluation.metrics["candidate"],
        "reference_metrics": evaluation.metrics["reference"],
    }


def bench_challenge(n_models: int) -> dict:
    params = Params()
    data, meta = load_splits("digits", params, 0.10)
    spec = model_spec_for(params.model, meta)
    original = train_model(spec, params.train, data["train"], data["val"], seed=params.train.seed, progress=False).model
    forget = data["forget"]

    def row(model):
        conf = logit_scaled_confidence(predict_logits(model, forget.images).numpy(), forget.labels)
        acc = lambda split: float((predict_logits(model, split.images).argmax(1).numpy() == split.labels).mean() * 100)  # noqa: E731
        return conf, acc(data["retain"]), acc(data["test"])

    started = time.perf_counter()
    retrained = [row(train_model(spec, params.train, data["retain"], data["val"], seed=1000 + i, progress=False).model) for i in range(n_models)]
    retrain_seconds = time.perf_counter() - started
    started = time.perf_counter()
    unlearned = [row(fine_tune(original, data["retain"], seed=i)) for i in range(n_models)]
    unlearn_seconds = time.perf_counter() - started
    print(f"digits: {n_models}+{n_models} models in {retrain_seconds + unlearn_seconds:.0f} s; scoring", flush=True)

    started = time.perf_counter()
    score = challenge_score(
        np.stack([r[0] for r in unlearned]), np.stack([r[0] for r in retrained]),
        unlearned_retain_acc=[r[1] for r in unlearned], retrained_retain_acc=[r[1] for r in retrained],
        unlearned_test_acc=[r[2] for r in unlearned], retrained_test_acc=[r[2] for r in retrained],
    )
    scoring = time.perf_counter() - started
    # Calibration: the original model, N times (a deterministic "method"), must score 0 forget points.
    original_score = challenge_score(
        np.stack([row(original)[0]] * n_models), np.stack([r[0] for r in retrained]),
        unlearned_retain_acc=[100.0], retrained_retain_acc=[100.0], unlearned_test_acc=[100.0], retrained_test_acc=[100.0],
    )
    # And a split of the retrained models against each other is the best achievable at N/2.
    half = n_models // 2
    retrain_vs_retrain = challenge_score(
        np.stack([r[0] for r in retrained[:half]]), np.stack([r[0] for r in retrained[half:]]),
        unlearned_retain_acc=[1.0], retrained_retain_acc=[1.0], unlearned_test_acc=[1.0], retrained_test_acc=[1.0],
    )
    return {
        "dataset": "digits",
        "forget_size": int(len(forget.labels)),
        "n_models_per_side": n_models,
        "scoring_seconds": scoring,
        "target_seconds": 60.0,
        "model_seconds": {"retrain_all": retrain_seconds, "fine_tune_all": unlearn_seconds},
        "fine_tune_baseline": score.summary(),
        "original_model_repeated": original_score.summary(),
        f"retrained_vs_retrained_n{half}": retrain_vs_retrain.summary(),
    }


def write_markdown(results: dict) -> str:
    lines = ["# Evaluation benchmark (issue 6)", "", f"Machine: {results['machine']} (2 cores shared with other jobs while it ran).", ""]
    if "fashion" in results:
        r = results["fashion"]
        lines += [
            "## One candidate on Fashion-MNIST, forget 10 %", "",
            "| measure | value |", "|---|---|",
            f"| sizes | {', '.join(f'{k} {v}' for k, v in r['sizes'].items())} |",
            f"| reference retrain, measured ({r['trained_epochs']} epochs) | {r['reference_retrain_seconds_measured']:.1f} s |",
            f"| reference retrain, full recipe ({r['recipe_epochs']} epochs, per-epoch x epochs) | {r['reference_retrain_seconds_full_recipe']:.1f} s |",
            f"| evaluation of one candidate (all metrics but the challenge score) | {r['evaluation_seconds']:.1f} s |",
            f"| same, original and reference outputs cached (next candidate of a search) | {r['evaluation_seconds_with_cached_original_and_reference']:.1f} s |",
            f"| evaluation / full-recipe retrain | **{100 * r['ratio_to_full_recipe_retrain']:.1f} %** (target <= 20 %) |",
            f"| evaluation / measured {r['trained_epochs']}-epoch retrain | {100 * r['ratio_to_measured_retrain']:.1f} % |",
            "",
        ]
    if "challenge" in results:
        r = results["challenge"]
        f = r["fine_tune_baseline"]
        half = r["n_models_per_side"] // 2
        pairs = r[f"retrained_vs_retrained_n{half}"]
        lines += [
            f"## Challenge score on digits, N = {r['n_models_per_side']} per side, forget {r['forget_size']} examples", "",
            "| measure | value |", "|---|---|",
            f"| scoring time | **{r['scoring_seconds']:.1f} s** (target <= 60 s) |",
            f"| FT baseline (1 epoch, lr 1e-3): final / forget score | {f['final_score']:.3f} / {f['forget_score']:.3f} |",
            f"| original model repeated N times: forget score | {r['original_model_repeated']['forget_score']:.3f} |",
            f"| retrained vs retrained (N = {half}): forget score | {pairs['forget_score']:.3f} |",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("fashion", "challenge", "all"), default="all")
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument("--n-models", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = RESULTS / "evaluation.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread, torch {torch.__version__}"
    if args.part in ("challenge", "all"):
        results["challenge"] = bench_challenge(args.n_models)
        print(json.dumps(results["challenge"], indent=2), flush=True)
    if args.part in ("fashion", "all"):
        results["fashion"] = bench_fashion(args.train_epochs)
        print(json.dumps({k: v for k, v in results["fashion"].items() if not k.endswith("metrics")}, indent=2), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "evaluation.md").write_text(write_markdown(results))


if __name__ == "__main__":
    main()
