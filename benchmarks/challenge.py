"""Scenario `evaluation`: the NeurIPS 2023 challenge forget score (peers.md §2.9) of every
method on digits, 10 % random forgetting, with N unlearned and N retrained models (N = 32 per side
in the full run).

One original model (seed 0) and one forget set (the methods scenario's random request of seed 0);
N retrains on the retain set with seeds 3000..3000+N-1; N runs of each method on the original with
seeds 0..N-1 and the configuration the methods scenario selected on validation (paper defaults if
that scenario has not run). N runs per method cost N x its time, so the methods scored are the 4
best of the methods scenario's digits random table (2 in quick mode) plus fine-tuning, the
challenge's own baseline. A deterministic method gives N identical models and scores 0 forget
points by design of the score. Sanity rows: the original model repeated N times (must score 0) and
the retrains split in two halves (N/2 per side: the best achievable at that N).

    python -m benchmarks run evaluation [--quick]
    python -m benchmarks.challenge [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.environment import record

RESULTS = Path(__file__).parent / "results"


def outputs(model, forget, retain, test, device: str):
    from forgetflow.evaluation.challenge_score import logit_scaled_confidence
    from forgetflow.training import predict_logits

    conf = logit_scaled_confidence(predict_logits(model, forget.images, device).numpy(), forget.labels)
    accs = [float((predict_logits(model, s.images, device).argmax(1).numpy() == s.labels).mean() * 100) for s in (retain, test)]
    return conf, accs[0], accs[1]


def score(unlearned: list, retrained: list) -> dict:
    from forgetflow.evaluation.challenge_score import challenge_score

    result = challenge_score(np.stack([u[0] for u in unlearned]), np.stack([r[0] for r in retrained]),
                             unlearned_retain_acc=[u[1] for u in unlearned], retrained_retain_acc=[r[1] for r in retrained],
                             unlearned_test_acc=[u[2] for u in unlearned], retrained_test_acc=[r[2] for r in retrained])
    return result.summary()


def selected_configs(results: Path) -> tuple[dict, list[str]]:
    """The random scenario's selected configs on digits and the methods ranked by their test Avg.
    Gap there (which methods to score; the configs themselves were selected on validation)."""
    path = results / "methods" / "digits_core.json"
    if not path.exists():
        return {}, []
    found = json.loads(path.read_text())
    configs = {key.split("/", 1)[1]: value["config"] for key, value in found["selected"].items() if key.startswith("random/")}
    gaps: dict[str, list[float]] = {}
    for row in found["rows"]:
        if row["scenario"] == "random" and row["method"] in configs:
            gaps.setdefault(row["method"], []).append(row["avg_gap"])
    return configs, sorted(gaps, key=lambda m: float(np.mean(gaps[m])))


def run(*, quick: bool, device: str, out: Path, command: str, n_models: int | None = None) -> dict:
    import torch

    from benchmarks import methods as M
    from forgetflow.methods import unlearn

    torch.set_num_threads(1)
    n = n_models or (4 if quick else 32)
    plan = M.Plan.make(quick, None)
    started = time.perf_counter()
    data = M.load("digits", plan)
    mask, _ = M.forget_mask(data, "random", 0)
    forget, retain = M._subset(data.train, mask), M._subset(data.train, ~mask)
    models = M.Models(data, device)
    original, _ = models.original(0)
    configs, ranked = selected_configs(out)
    # Scoring needs N runs per method: the best `top` methods of the random scenario plus fine-tuning (the challenge's baseline).
    top = 2 if quick else 4
    names = set(ranked[:top]) | {"finetune"} if ranked else {"finetune", "gradient_ascent", "bad_teacher"}
    infos = [i for i in M.methods_for("random", None) if i.name in names]
    print(f"challenge: digits, forget {int(mask.sum())}, N = {n}; {len(infos)} methods; configs from {'the methods scenario' if configs else 'paper defaults'}", flush=True)
    retrained, retrain_seconds = [], 0.0
    for i in range(n):
        model, seconds = models.train(retain, 3000 + i)
        retrained.append(outputs(model, forget, retain, data.test, device))
        retrain_seconds += seconds
    rows = []
    base = outputs(original, forget, retain, data.test, device)
    rows.append({"method": "original (no unlearning), repeated N times", "config": {}, **score([base] * n, retrained), "seconds_per_model": 0.0})
    half = n // 2
    if half >= 3:
        rows.append({"method": f"retrain vs retrain (N = {half} per side)", "config": {}, **score(retrained[:half], retrained[half : 2 * half]), "seconds_per_model": retrain_seconds / n})
    stats = models.stats(0)
    for info in infos:
        config = configs.get(info.name, {})
        unlearned, seconds = [], 0.0
        try:
            for seed in range(n):
                result = unlearn(info.name, original, forget, retain=retain, val=data.val, stats=stats if "stats" in info.needs else None, config=config, seed=seed, device=device, kind="samples", time_budget_s=retrain_seconds / n, progress=False)
                unlearned.append(outputs(result.model, forget, retain, data.test, device))
                seconds += result.seconds
        except Exception as exc:  # noqa: BLE001 -- recorded, not fatal
            print(f"  {info.name}: failed: {exc}", flush=True)
            continue
        rows.append({"method": info.name, "config": config, **score(unlearned, retrained), "seconds_per_model": seconds / n})
        print(f"  {info.name}: final {rows[-1]['final_score']:.3f} forget {rows[-1]['forget_score']:.3f}", flush=True)
    result = {"environment": record(device=device, quick=quick, seeds={"retrain": [3000, 3000 + n - 1], "methods": [0, n - 1]}, command=command),
              "dataset": "digits", "forget_size": int(mask.sum()), "n_models_per_side": n, "rows": rows, "seconds": time.perf_counter() - started}
    (out / "challenge.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"challenge: wrote {out / 'challenge.json'} in {result['seconds']:.0f}s", flush=True)
    return result


def render(results_dir: Path, plots_dir: Path, prefix: str = "benchmarks/plots/") -> str | None:
    path = results_dir / "challenge.json"
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    env = r["environment"]
    lines = [
        f"## Challenge forget score on digits (N = {r['n_models_per_side']} per side)", "",
        f"Command: `{env['command']}` — {'QUICK' if env['quick'] else 'full'} mode, device {env['device']}, {r['seconds'] / 60:.1f} min. "
        f"Forget set: {r['forget_size']} samples (10 % random, seed 0). Score as in the NeurIPS 2023 challenge (peers.md §2.9): forget score F in [0, 1] "
        f"(1 = indistinguishable from retraining at this N), final = F × RA ratio × TA ratio. Scores are not comparable across N.", "",
        "| method | final score | forget score F | mean ε | retain ratio | test ratio | s / model | config |", "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(r["rows"], key=lambda x: -x["final_score"]):
        lines.append(f"| {row['method']} | {row['final_score']:.3f} | {row['forget_score']:.3f} | {row['mean_epsilon']:.2f} | {row['retain_ratio']:.3f} | {row['test_ratio']:.3f} | {row['seconds_per_model']:.2f} | `{json.dumps(row['config'])}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-models", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run(quick=args.quick, device=args.device, out=args.out, n_models=args.n_models, command="python -m benchmarks.challenge " + " ".join(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
