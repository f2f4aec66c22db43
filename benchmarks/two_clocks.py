"""Two clocks benchmark: time to compliance on the fast path against a retrain, the compute of a
stream of batches with a reference every N batches against one every batch, and how often the
later reference disagrees with the reference-free gate.

    python -m benchmarks.two_clocks                 # the ladder benchmark's setting (real numbers)
    python -m benchmarks.two_clocks --quick         # a small smoke run (minutes): not for the report

Protocol (issue "Two clocks"). The setting is benchmarks/ladder.py's: a 3,000-image Fashion-MNIST
pool, `small_cnn` width 16, 60 epochs, originals cached in ~/.cache/forgetflow-bench/ladder/.
A stream of `--batches` random-sample deletion batches (`--per-batch` train samples each) runs
twice from the same original, with the gate of params.yaml as shipped:

- two clocks (`--verify-every` N): each batch climbs the shipped ladder gated by the
  reference-free checks (the fast path) and its candidate becomes the provisional champion; a
  batch whose every rung fails retrains the reference at once (escalation). Every N batches (and
  after the last) a reference is retrained on the data left and gates the champion on each
  pending batch's forget set and on their union, as `forgetflow verify` does; a failed verdict
  promotes the reference (the stream continues from it).
- today (`always`): each batch retrains the reference and climbs the ladder gated against it.

Recorded per batch: the fast path's wall time (rungs + gate evaluations: the time to a compliant
model, without the flow's own overhead, which BENCHMARKS.md's deletion-flow section measures),
the retrain's wall time, and per verification the verdicts with the failing checks' reasons.
Reported: median time to compliance / retrain, the stream's compute against today's, and the
disagreement rate (provisional champions the reference rejected), with examples.

One torch thread. Results: benchmarks/results/two_clocks/seed-<N>.json and report.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "two_clocks"


def _subset(split, mask):
    from forgetflow.data.store import LoadedSplit

    return LoadedSplit(split.images[mask], split.labels[mask], split.sample_ids[mask])


def _digest(split) -> str:
    return hashlib.sha256(np.sort(split.sample_ids).astype("<i8").tobytes()).hexdigest()[:12]


def draw_batches(data, n_batches: int, per_batch: int, seed: int) -> list[np.ndarray]:
    """Disjoint random train indices per batch (seeded; the same stream for both runs)."""
    order = np.random.default_rng(20_000 + seed).permutation(len(data.train.labels))
    return [np.sort(order[i * per_batch : (i + 1) * per_batch]) for i in range(n_batches)]


class Stream:
    """One run over the batches: the champion, what is deleted so far, and the compute it cost."""

    def __init__(self, data, trained, original, stats, seed: int, params, log):
        self.data, self.trained, self.seed, self.params, self.log = data, trained, seed, params, log
        self.champion, self.stats = original, stats
        self.deleted = np.zeros(len(data.train.labels), dtype=bool)
        self.compute = 0.0

    def retained(self):
        return _subset(self.data.train, ~self.deleted)

    def reference(self):
        """A retrain on the data left (cached by its sample digest: both runs share retrains)."""
        retain = self.retained()
        model, seconds = self.trained.get(f"two-clocks-ref-{_digest(retain)}", retain, self.seed + 1000)
        self.compute += seconds
        return model, seconds

    def climb(self, forget, reference, reference_seconds=None):
        from benchmarks.ladder import RETAIN_SAMPLE, _ladder_rungs
        from forgetflow.ladder import climb, evaluation_gate

        retain = self.retained()
        gate = evaluation_gate(self.champion, reference, forget=forget, retain=retain, val=self.data.val, test=self.data.test, kind="samples", goal="forget",
                               params=self.params, reference_required=reference is not None, reference_seconds=reference_seconds)
        pick = np.random.default_rng(self.seed).choice(len(retain.labels), size=min(RETAIN_SAMPLE, len(retain.labels)), replace=False)
        rungs, _ = _ladder_rungs("samples", "forget", None)
        started = time.perf_counter()
        climbed = climb(rungs, self.champion, forget, gate=gate, retain=_subset(retain, np.isin(np.arange(len(retain.labels)), pick)), val=self.data.val, stats=self.stats,
                        kind="samples", goal="forget", seed=self.seed, default_budget_s=900, progress=False)
        wall = time.perf_counter() - started
        self.compute += wall
        return climbed, wall

    def judge(self, model, reference, forget) -> dict:
        from forgetflow.evaluation.evaluate import evaluate_candidate

        started = time.perf_counter()
        ev = evaluate_candidate(None, model, reference, forget=forget, retain=self.retained(), val=self.data.val, test=self.data.test, request_kind="samples", goal="forget", params=self.params, reference_required=True)
        self.compute += time.perf_counter() - started
        return {"passed": ev.decision.passed, "reason": ev.decision.reason, "avg_gap": ev.summary.get("candidate_avg_gap")}


def run_two_clocks(stream: Stream, batches, verify_every: int) -> dict:
    from forgetflow.data.store import LoadedSplit

    rows, verifications, pending = [], [], []
    for index, picked in enumerate(batches):
        forget = _subset(stream.data.train, np.isin(np.arange(len(stream.data.train.labels)), picked))
        stream.deleted[picked] = True
        climbed, wall = stream.climb(forget, None)
        row = {"batch": index + 1, "fast_path_seconds": wall, "passed_fast_gate": climbed.passed, "rungs_tried": climbed.rungs_tried}
        if climbed.passed:
            stream.champion = climbed.result.model if climbed.result is not None else stream.champion
            pending.append((index + 1, forget))
            row["compliant_seconds"] = wall
        else:  # escalation: the reference now, then the candidate judged against it (or the reference promoted)
            reference, seconds = stream.reference()
            verdict = stream.judge(climbed.result.model if climbed.result else stream.champion, reference, forget)
            stream.champion = (climbed.result.model if climbed.result and verdict["passed"] else reference)
            row.update({"escalated": True, "compliant_seconds": wall + seconds, "escalated_verdict": verdict["reason"]})
        rows.append(row)
        stream.log(f"two clocks: batch {index + 1}: fast gate {'PASS' if climbed.passed else 'failed -> reference'} in {wall:.1f} s")
        if pending and ((index + 1) % verify_every == 0 or index + 1 == len(batches)):
            reference, seconds = stream.reference()
            per_batch = {str(b): stream.judge(stream.champion, reference, f) for b, f in pending}
            union = None
            if len(pending) > 1:
                parts = [f for _, f in pending]
                union = stream.judge(stream.champion, reference, LoadedSplit(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]), np.concatenate([p.sample_ids for p in parts])))
            passed = all(v["passed"] for v in per_batch.values()) and (union is None or union["passed"])
            verifications.append({"after_batch": index + 1, "reference_seconds": seconds, "batches": per_batch, "union": union, "passed": passed})
            stream.log(f"two clocks: verification after batch {index + 1}: {'verified' if passed else 'FAILED -> reference promoted'} ({len(pending)} pending)")
            if not passed:
                stream.champion = reference
            pending = []
    return {"batches": rows, "verifications": verifications, "compute_seconds": stream.compute}


def run_every_batch(stream: Stream, batches) -> dict:
    rows = []
    for index, picked in enumerate(batches):
        forget = _subset(stream.data.train, np.isin(np.arange(len(stream.data.train.labels)), picked))
        stream.deleted[picked] = True
        reference, seconds = stream.reference()
        climbed, wall = stream.climb(forget, reference, seconds)
        stream.champion = climbed.result.model if climbed.passed and climbed.result is not None else reference
        rows.append({"batch": index + 1, "reference_seconds": seconds, "ladder_seconds": wall, "passed": climbed.passed, "compliant_seconds": seconds + wall})
        stream.log(f"every batch: batch {index + 1}: {'candidate' if climbed.passed else 'reference'} promoted; retrain {seconds:.1f} s + ladder {wall:.1f} s")
    return {"batches": rows, "compute_seconds": stream.compute}


def summarise(result: dict) -> dict:
    fast, today = result["two_clocks"], result["every_batch"]
    retrain = statistics.median(r["reference_seconds"] for r in today["batches"])
    provisional = [(v["after_batch"], b, verdict) for v in fast["verifications"] for b, verdict in v["batches"].items()]
    rejected = [(after, b, verdict["reason"]) for after, b, verdict in provisional if not verdict["passed"]]
    return {
        "retrain_seconds_median": retrain,
        "time_to_compliance_ratio_median": statistics.median(r["compliant_seconds"] for r in fast["batches"]) / retrain,
        "today_time_to_compliance_ratio_median": statistics.median(r["compliant_seconds"] for r in today["batches"]) / retrain,
        "compute_ratio": fast["compute_seconds"] / today["compute_seconds"],
        "fast_gate_pass_rate": sum(r["passed_fast_gate"] for r in fast["batches"]) / len(fast["batches"]),
        "disagreement_rate": len(rejected) / len(provisional) if provisional else None,
        "disagreement_examples": [f"batch {b} (verified after batch {after}): {reason}" for after, b, reason in rejected[:5]],
    }


def report(results: list[dict]) -> str:
    lines = ["# Two clocks", "", "| seed | batches | verify every | retrain (s) | time to compliance / retrain | today | compute vs every batch | fast gate pass | disagreement |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["summary"]
        dis = "n/a" if s["disagreement_rate"] is None else f"{s['disagreement_rate']:.0%}"
        lines.append(f"| {r['seed']} | {r['n_batches']} | {r['verify_every']} | {s['retrain_seconds_median']:.1f} | {s['time_to_compliance_ratio_median']:.1%} | {s['today_time_to_compliance_ratio_median']:.0%} | {s['compute_ratio']:.0%} | {s['fast_gate_pass_rate']:.0%} | {dis} |")
    examples = [e for r in results for e in r["summary"]["disagreement_examples"]]
    if examples:
        lines += ["", "What the reference-free gate missed (the reference's failing checks):", ""] + [f"- {e}" for e in examples[:10]]
    if any(r.get("quick") for r in results):
        lines += ["", "**Quick run** (tiny setting): a smoke test, not the benchmark's numbers."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import torch

    from benchmarks.ladder import CACHE, EPOCHS, TRAIN_POOL, Trained, load_setting
    from forgetflow.evaluation.config import EvaluationParams
    from forgetflow.layer_stats import compute_layer_stats

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--verify-every", type=int, default=5)
    parser.add_argument("--per-batch", type=int, default=30, help="train samples forgotten per batch (1%% of the pool)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run: 600-image pool, 4 epochs, 4 batches, verify every 2")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.quick:
        epochs, pool, args.batches, args.verify_every, args.per_batch = 4, 600, 4, 2, 12
        out = args.out / "quick"
    else:
        epochs, pool, out = EPOCHS, TRAIN_POOL, args.out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    data = load_setting(epochs=epochs, train_pool=pool)
    trained = Trained(data, f"fmnist{pool}-e{epochs}")
    params = EvaluationParams()  # the gate as shipped
    results = []
    for seed in args.seeds:
        original, seconds = trained.get("original", data.train, seed)
        stats = compute_layer_stats(original, data.train.images)
        batches = draw_batches(data, args.batches, args.per_batch, seed)
        started = time.perf_counter()
        fast = run_two_clocks(Stream(data, trained, original, stats, seed, params, print), batches, args.verify_every)
        today = run_every_batch(Stream(data, trained, original, stats, seed, params, print), batches)
        result = {"seed": seed, "n_batches": args.batches, "verify_every": args.verify_every, "per_batch": args.per_batch, "quick": args.quick, "cache": str(CACHE),
                  "command": "python -m benchmarks.two_clocks " + " ".join(sys.argv[1:] if argv is None else argv),
                  "two_clocks": fast, "every_batch": today, "wall_seconds": time.perf_counter() - started}
        result["summary"] = summarise(result)
        (out / f"seed-{seed}.json").write_text(json.dumps(result, indent=2, default=float))
        results.append(result)
        print(json.dumps(result["summary"], indent=2, default=float), flush=True)
    (out / "report.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
