"""Method ladder benchmark on a setting that tells forgetting from doing nothing.

    python -m benchmarks.ladder --seeds 0 1 2 3 4 [--calibrate] [--kinds samples subjects class misclassify]
    python -m benchmarks.ladder --report            # markdown table + plot from the per-seed results

The setting (issue "Unlearning that ships"): a 3,000-image stratified Fashion-MNIST pool (10 % of
it validation), the official test file subsampled to 2,000, `small_cnn` width 16 trained 60 epochs
with the project's recipe, no augmentation: the original memorises its training data (train
~100 %, test ~85 %), so on a 10 % random forget set it sits several points of Avg. Gap from a
retrain, while a second retrain (another seed) gives the noise floor.

Per seed and request kind, the batch is run as the deletion flow runs it: the reference is
retrained once, then the ladder (the shipped one, and the one `forgetflow calibrate` selects on
that seed's original) is climbed with every rung gated against that reference by the gate of
params.yaml. Recorded: whether the first rung's candidate was promoted (first-try), the rungs
tried, whether any rung passed, the promoted model's Avg. Gap (candidate, or the reference when
every rung failed, whose gap is 0 by definition and is not counted as unlearning), the original's
Avg. Gap and the noise floor, and the wall time of the whole batch (retrain + rungs + gate
evaluations) against a retrain-only batch. Misclassify requests (k = 16, 64, 128) are judged
against the original: every instance flipped, test accuracy drop.

One torch thread per process. Results: benchmarks/results/ladder/seed-<N>.json (a finished seed
is skipped on a re-run), the report in benchmarks/results/ladder/report.md and
benchmarks/plots/ladder.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "ladder"
PLOTS = ROOT / "benchmarks" / "plots"
CACHE = Path.home() / ".cache" / "forgetflow-bench" / "ladder"
KINDS = ("samples", "subjects", "class", "misclassify")
SCENARIO = {"samples": ("random", "samples", "forget"), "subjects": ("subjects", "subjects", "forget"), "class": ("class", "classes", "forget")}
MISCLASSIFY_K = (16, 64, 128)
TRAIN_POOL, TEST_POOL, EPOCHS = 3000, 2000, 60
RETAIN_SAMPLE = 2000  # unlearning.retain_sample_size as shipped: what the deletion flow gives a method


def load_setting(epochs: int = EPOCHS, train_pool: int = TRAIN_POOL):
    from benchmarks.datasets import load_dataset

    return load_dataset("fashion-mnist", train_pool, TEST_POOL, epochs)


class Trained:
    """Originals, references and noise-floor retrains, cached on disk by (role, seed, forget digest)."""

    def __init__(self, data, tag: str):
        self.data, self.folder = data, CACHE / tag
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, name: str, split, seed: int):
        import torch

        from forgetflow.models import build_model
        from forgetflow.training import train_model

        path = self.folder / f"{name}-{seed}.pt"
        if path.exists():
            blob = torch.load(path, weights_only=False)
            model = build_model(self.data.spec)
            model.load_state_dict(blob["state_dict"])
            return model.eval(), blob["seconds"]
        result = train_model(self.data.spec, self.data.recipe, split, self.data.val, seed=seed, progress=False)
        torch.save({"state_dict": result.model.state_dict(), "seconds": result.seconds}, path)
        return result.model.eval(), result.seconds


def _subset(split, mask):
    from forgetflow.data.store import LoadedSplit

    return LoadedSplit(split.images[mask], split.labels[mask], split.sample_ids[mask])


def _ladder_rungs(kind: str, goal: str, calibration: dict | None):
    from forgetflow.deletion.policy import UnlearningPolicy

    return UnlearningPolicy().ladder_for(kind, goal, calibration=calibration)


def run_seed(data, trained: Trained, seed: int, kinds, calibrate: bool, log, calibration: dict | None = None, save=None, max_configs: int = 3) -> dict:
    """One seed's batches, kind by kind; `save(partial)` after each kind, so an interrupted run keeps
    the kinds it finished (a re-run redoes the seed; the trained models are cached on disk)."""
    import torch

    from benchmarks.methods import forget_mask
    from forgetflow.evaluation.config import EvaluationParams
    from forgetflow.evaluation.evaluate import evaluate_candidate
    from forgetflow.layer_stats import compute_layer_stats
    from forgetflow.ladder import climb, evaluation_gate

    torch.set_num_threads(1)
    params = EvaluationParams()  # the gate of params.yaml as shipped
    original, original_seconds = trained.get("original", data.train, seed)
    stats = compute_layer_stats(original, data.train.images)
    train_eval = evaluate_accuracy(original, data.train), evaluate_accuracy(original, data.test)
    log(f"seed {seed}: original train {train_eval[0]:.1f}% test {train_eval[1]:.1f}% ({original_seconds:.0f} s)")
    out = {"seed": seed, "original": {"train_accuracy": train_eval[0], "test_accuracy": train_eval[1], "seconds": original_seconds}, "kinds": {}}
    if calibration is not None:
        out["calibration"] = {"ladders": calibration["ladders"], "source": calibration.get("calibration_id", "given")}
    elif calibrate:
        from forgetflow.calibration import calibrate as run_calibration

        started = time.perf_counter()
        result = run_calibration(original, data.spec, data.recipe, train=data.train, val=data.val, subjects=data.subjects.astype(str), eval_params=params, stats=stats, seed=seed, reference_seed=seed + 5000, retain_sample_size=RETAIN_SAMPLE, max_configs=max_configs, progress=False, log=lambda m: log("  " + m))
        calibration = {"ladders": result.ladders, "calibration_id": f"bench-seed-{seed}"}
        out["calibration"] = {"ladders": result.ladders, "notes": result.notes, "seconds": time.perf_counter() - started, "trials": [t.__dict__ for t in result.trials]}
        log(f"seed {seed}: calibration {out['calibration']['seconds']:.0f} s: {json.dumps(result.ladders)}")
    variants = {"shipped": None, **({"calibrated": calibration} if calibration is not None else {})}
    # The retain sample of each kind: drawn in the fixed order samples, subjects, class from one
    # generator, whichever kinds this run does, so a run of some kinds gives the same batches as a
    # full run.
    retain_rng, retain_picks = np.random.default_rng(seed), {}
    for kind in ("samples", "subjects", "class"):
        retain_size = int((~forget_mask(data, SCENARIO[kind][0], seed)[0]).sum())
        retain_picks[kind] = np.sort(retain_rng.choice(retain_size, size=min(RETAIN_SAMPLE, retain_size), replace=False))
    for kind in kinds:
        if kind == "misclassify":
            out["kinds"]["misclassify"] = {str(k): misclassify(data, original, seed, k, variants, params, log) for k in MISCLASSIFY_K}
            if save:
                save(out)
            continue
        scenario, request_kind, goal = SCENARIO[kind]
        mask, classes = forget_mask(data, scenario, seed)
        forget, retain = _subset(data.train, mask), _subset(data.train, ~mask)
        reference, reference_seconds = trained.get(f"reference-{kind}", retain, seed + 1000)
        noise, _ = trained.get(f"noise-{kind}", retain, seed + 2000)
        forget_classes = [int(c) for c in classes] if len(classes) else None

        def gap_of(model):
            ev = evaluate_candidate(original, model, reference, forget=forget, retain=retain, val=data.val, test=data.test, request_kind=request_kind, goal=goal, forget_classes=forget_classes, params=params)
            return ev.summary["candidate_avg_gap"]

        row = {"n_forget": int(mask.sum()), "reference_seconds": reference_seconds, "original_avg_gap": gap_of(original), "noise_floor": gap_of(noise), "variants": {}}
        # Sanity: does a second retrain (perfect unlearning, another seed) pass the gate? Does doing nothing?
        sanity_gate = evaluation_gate(original, reference, forget=forget, retain=retain, val=data.val, test=data.test, kind=request_kind, goal=goal, params=params, forget_classes=forget_classes, reference_required=True)
        row["retrain_passes_gate"] = sanity_gate(noise, 0.0).passed
        row["original_passes_gate"] = sanity_gate(original, 0.0).passed
        retain_sample = _subset(retain, np.isin(np.arange(len(retain.labels)), retain_picks[kind]))
        for variant, cal in variants.items():
            rungs, source = _ladder_rungs(request_kind, goal, cal)
            gate = evaluation_gate(original, reference, forget=forget, retain=retain, val=data.val, test=data.test, kind=request_kind, goal=goal, params=params, forget_classes=forget_classes, reference_required=True, reference_seconds=reference_seconds)
            started = time.perf_counter()
            climbed = climb(rungs, original, forget, gate=gate, retain=retain_sample, val=data.val, stats=stats, kind=request_kind, goal=goal, seed=seed, default_budget_s=900, progress=False)
            ladder_wall = time.perf_counter() - started
            promoted = climbed.outcomes[climbed.accepted] if climbed.passed else None
            row["variants"][variant] = {
                "source": source,
                "rungs": [r.model_dump() for r in rungs],
                "outcomes": [{k: o.as_dict()[k] for k in ("method", "passed", "reason", "seconds", "metrics")} for o in climbed.outcomes],
                "first_try": bool(climbed.passed and climbed.accepted == 0),
                "passed": climbed.passed,
                "rungs_tried": climbed.rungs_tried,
                "unlearn_seconds": sum(o.seconds for o in climbed.outcomes),
                "ladder_wall_seconds": ladder_wall,  # rungs + their gate evaluations
                "batch_ratio": (reference_seconds + ladder_wall) / reference_seconds,
                "promoted_avg_gap": promoted.metrics.get("avg_gap") if promoted else None,
            }
            v = row["variants"][variant]
            log(f"seed {seed} {kind} {variant}: {'PASS rung ' + str(climbed.accepted + 1) if climbed.passed else 'all rungs failed'} of {len(rungs)}; gap {v['promoted_avg_gap']} (original {row['original_avg_gap']:.2f}, floor {row['noise_floor']:.2f}); unlearning {v['unlearn_seconds']:.1f} s vs retrain {reference_seconds:.0f} s")
        out["kinds"][kind] = row
        if save:
            save(out)
    return out


def evaluate_accuracy(model, split) -> float:
    from forgetflow.training import predict_logits

    return 100.0 * float((predict_logits(model, split.images).numpy().argmax(1) == split.labels).mean())


def misclassify(data, original, seed: int, k: int, variants: dict, params, log) -> dict:
    from benchmarks.methods import forget_mask
    from forgetflow.ladder import climb, evaluation_gate

    mask, _ = forget_mask(data, "misclassify", seed, k)
    forget, retain = _subset(data.train, mask), _subset(data.train, ~mask)
    pick = np.sort(np.random.default_rng(seed).choice(len(retain.labels), size=min(RETAIN_SAMPLE, len(retain.labels)), replace=False))
    retain_sample = _subset(retain, np.isin(np.arange(len(retain.labels)), pick))
    out = {}
    for variant, cal in variants.items():
        rungs, source = _ladder_rungs("samples", "misclassify", cal)
        gate = evaluation_gate(original, None, forget=forget, retain=retain, val=data.val, test=data.test, kind="samples", goal="misclassify", params=params)
        climbed = climb(rungs, original, forget, gate=gate, retain=retain_sample, val=data.val, kind="samples", goal="misclassify", seed=seed, default_budget_s=900, progress=False)
        last = climbed.outcomes[climbed.accepted if climbed.passed else -1]
        test_drop = evaluate_accuracy(original, data.test) - last.metrics.get("test_accuracy", float("nan"))
        out[variant] = {
            "source": source, "first_try": bool(climbed.passed and climbed.accepted == 0), "passed": climbed.passed, "rungs_tried": climbed.rungs_tried,
            "method": last.method, "flipped": 100.0 - last.metrics.get("forget_accuracy", float("nan")), "test_drop": test_drop,
            "unlearn_seconds": sum(o.seconds for o in climbed.outcomes),
            "outcomes": [{kk: o.as_dict()[kk] for kk in ("method", "passed", "reason", "seconds")} for o in climbed.outcomes],
        }
        log(f"seed {seed} misclassify k={k} {variant}: {'PASS' if climbed.passed else 'FAIL'} {last.method}: flipped {out[variant]['flipped']:.0f}%, test drop {test_drop:.2f}")
    return out


# Report ------------------------------------------------------------------------------------
def _mean(values) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else float("nan")


def summarise(results: list[dict]) -> dict:
    table = {}
    for kind in KINDS:
        rows = [r["kinds"][kind] for r in results if kind in r["kinds"]]
        if not rows:
            continue
        if kind == "misclassify":
            for k in MISCLASSIFY_K:
                for variant in ("shipped", "calibrated"):
                    cells = [row[str(k)][variant] for row in rows if variant in row.get(str(k), {})]
                    if cells:
                        table[(f"misclassify k={k}", variant)] = {
                            "seeds": len(cells), "first_try": 100 * _mean([c["first_try"] for c in cells]), "passed": 100 * _mean([c["passed"] for c in cells]),
                            "rungs": _mean([c["rungs_tried"] for c in cells]), "flipped": _mean([c["flipped"] for c in cells]),
                            "test_drop": _mean([c["test_drop"] for c in cells]), "max_test_drop": max(c["test_drop"] for c in cells),
                            "unlearn_seconds": _mean([c["unlearn_seconds"] for c in cells]),
                        }
            continue
        for variant in ("shipped", "calibrated"):
            cells = [(row, row["variants"][variant]) for row in rows if variant in row["variants"]]
            if not cells:
                continue
            table[(kind, variant)] = {
                "seeds": len(cells),
                "first_try": 100 * _mean([v["first_try"] for _, v in cells]),
                "passed": 100 * _mean([v["passed"] for _, v in cells]),
                "rungs": _mean([v["rungs_tried"] for _, v in cells]),
                "promoted_gap": _mean([v["promoted_avg_gap"] for _, v in cells]),
                "original_gap": _mean([r["original_avg_gap"] for r, _ in cells]),
                "noise_floor": _mean([r["noise_floor"] for r, _ in cells]),
                "unlearn_ratio": _mean([v["unlearn_seconds"] / r["reference_seconds"] for r, v in cells]),
                "batch_ratio": _mean([v["batch_ratio"] for _, v in cells]),
                "reference_seconds": _mean([r["reference_seconds"] for r, _ in cells]),
                "retrain_passes": 100 * _mean([r.get("retrain_passes_gate") for r, _ in cells]),
                "original_passes": 100 * _mean([r.get("original_passes_gate") for r, _ in cells]),
            }
    return table


def report(results: list[dict]) -> str:
    table = summarise(results)
    originals = [r["original"] for r in results]
    lines = [
        f"Setting: Fashion-MNIST, {TRAIN_POOL:,}-image pool (10 % validation), {TEST_POOL:,} test images, small_cnn width 16, {EPOCHS} epochs, no augmentation; "
        f"original train {_mean([o['train_accuracy'] for o in originals]):.1f} %, test {_mean([o['test_accuracy'] for o in originals]):.1f} % (mean of {len(originals)} seeds: {', '.join(str(r['seed']) for r in results)}). "
        "Gate: params.yaml as shipped. Avg. Gap on the test split against the batch's reference; noise floor = a second retrain (another seed) against it.",
        "",
        "| request | ladder | seeds | first-try % | any rung passed % | rungs tried | promoted Avg. Gap | original Avg. Gap | noise floor | gap / floor | rungs time / retrain | batch / retrain-only batch | gate passes: 2nd retrain / original % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (kind, variant), c in table.items():
        if kind.startswith("misclassify"):
            continue
        ratio = c["promoted_gap"] / c["noise_floor"] if c["noise_floor"] else float("nan")
        lines.append(f"| {kind} | {variant} | {c['seeds']} | {c['first_try']:.0f} | {c['passed']:.0f} | {c['rungs']:.2f} | {c['promoted_gap']:.2f} | {c['original_gap']:.2f} ({c['original_gap'] / c['noise_floor']:.1f}x) | {c['noise_floor']:.2f} | {ratio:.2f}x | {c['unlearn_ratio']:.3f} | {c['batch_ratio']:.2f} | {c['retrain_passes']:.0f} / {c['original_passes']:.0f} |")
    misclassify = [(kind, variant, c) for (kind, variant), c in table.items() if kind.startswith("misclassify")]
    if misclassify:
        lines += ["", "| misclassify | ladder | seeds | first-try % | passed % | rungs tried | instances flipped % | test drop (mean / max) | unlearning s |", "|---|---|---|---|---|---|---|---|---|"]
    for kind, variant, c in misclassify:
        lines.append(f"| {kind.split()[1]} | {variant} | {c['seeds']} | {c['first_try']:.0f} | {c['passed']:.0f} | {c['rungs']:.2f} | {c['flipped']:.1f} | {c['test_drop']:.2f} / {c['max_test_drop']:.2f} | {c['unlearn_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> Path:
    from forgetflow.plotting import pyplot

    plt = pyplot()
    table = summarise(results)
    kinds = [k for k in ("samples", "subjects", "class") if (k, "shipped") in table]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(kinds))
    variants = [v for v in ("shipped", "calibrated") if any((k, v) in table for k in kinds)]
    for i, variant in enumerate(variants):
        values = [table.get((k, variant), {}).get("first_try", np.nan) for k in kinds]
        axes[0].bar(x + (i - (len(variants) - 1) / 2) * 0.38, values, 0.38, label=variant)
    axes[0].axhline(90, color="tab:red", ls="--", lw=1, label="target (calibrated)")
    axes[0].axhline(70, color="tab:orange", ls=":", lw=1, label="target (shipped)")
    axes[0].set_xticks(x, kinds)
    axes[0].set_ylabel("first-try rate (%)")
    axes[0].set_ylim(0, 110)
    axes[0].legend(fontsize=7)
    width = 0.2
    bars = [(label, key) for label, key in (("original", "original_gap"), ("shipped", "promoted_gap"), ("calibrated", "promoted_gap"), ("noise floor", "noise_floor")) if label != "calibrated" or "calibrated" in variants]
    for i, (label, key) in enumerate(bars):
        variant = "calibrated" if label == "calibrated" else "shipped"
        values = [table.get((k, variant), {}).get(key, np.nan) for k in kinds]
        axes[1].bar(x + (i - (len(bars) - 1) / 2) * width, values, width, label=label if label in ("original", "noise floor") else f"promoted ({label})")
    axes[1].set_xticks(x, kinds)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("Avg. Gap to the retrain (points, log)")
    axes[1].legend(fontsize=7)
    fig.suptitle("Method ladder on the discriminative Fashion-MNIST setting", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def targets(results: list[dict]) -> list[str]:
    """Rows of BENCHMARKS.md's targets table (issue "Unlearning that ships")."""
    table, rows = summarise(results), []
    for variant, need in (("calibrated", 90), ("shipped", 70)):
        for kind in ("samples", "subjects", "class"):
            c = table.get((kind, variant))
            if c:
                verdict = ("**met**" if c["first_try"] >= need else "**not met**") if c["seeds"] >= 5 else f"**not measured** ({c['seeds']} seed(s); the target is over ≥ 5)"
                rows.append(f"| first-try rate, {kind}, {variant} ladder ≥ {need} % (discriminative setting) | {c['first_try']:.0f} % over {c['seeds']} seeds | {verdict} |")
    for kind in ("samples", "subjects", "class"):
        for variant in ("shipped", "calibrated"):
            c = table.get((kind, variant))
            if c and c["noise_floor"] and c["noise_floor"] == c["noise_floor"]:
                ratio, original = c["promoted_gap"] / c["noise_floor"], c["original_gap"] / c["noise_floor"]
                ok = ratio <= 1.5 and original >= 4
                measured = f"{ratio:.2f}× (original {original:.1f}×)" if ratio == ratio else f"no candidate promoted (original {original:.1f}×)"
                rows.append(f"| promoted candidate Avg. Gap ≤ 1.5× noise floor, original ≥ 4× ({kind}, {variant}) | {measured} | {'**met**' if ok else '**not met**'} |")
    for k in MISCLASSIFY_K:
        for variant in ("shipped", "calibrated"):
            c = table.get((f"misclassify k={k}", variant))
            if c:
                ok = c["flipped"] >= 100 and c["max_test_drop"] <= 2
                verdict = "**not met**" if not ok else ("**met**" if c["seeds"] >= 5 else f"**not measured** ({c['seeds']} seed(s); the target is over ≥ 5)")
                rows.append(f"| misclassify k={k} ({variant}): every instance flipped, test drop ≤ 2 points | {c['flipped']:.1f} % flipped, drop {c['test_drop']:.2f} (max {c['max_test_drop']:.2f}) over {c['seeds']} seed(s) | {verdict} |")
    return rows


def render(results_dir: Path, plots_dir: Path, prefix: str = "benchmarks/plots/") -> str | None:
    """The BENCHMARKS.md section, from results_dir/ladder/."""
    folder = results_dir / "ladder"
    results = load_results(folder) if folder.is_dir() else []
    if not results:
        return None
    plot(results, plots_dir / "ladder.png")
    commands = sorted({r.get("command", "python -m benchmarks.ladder") for r in results})
    parts = [
        "## Method ladder on a setting that discriminates (issue 21)",
        "",
        f"Command: {', '.join(f'`{c}`' for c in commands)}; per-seed results in `benchmarks/results/ladder/seed-*.json`.",
        "",
        report(results),
        f"![first-try rate and Avg. Gap per request kind]({prefix}ladder.png)",
        "",
    ]
    scale = folder / "scale.md"
    if scale.exists():
        parts += [scale.read_text().rstrip(), ""]
    return "\n".join(parts)


def load_results(folder: Path = OUT) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("seed-*.json"))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--calibrate", action="store_true", help="also calibrate on each seed's original and climb the calibrated ladder")
    parser.add_argument("--calibration", type=Path, help="climb the ladders of this calibration (a seed-N.json with a calibration, or a calibration.json) on every seed, as a workspace calibrated once serves many batches")
    parser.add_argument("--max-configs", type=int, default=3, help="with --calibrate: configs per candidate method (forgetflow calibrate --max-configs)")
    parser.add_argument("--report", action="store_true", help="only write the report from the stored results")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--force", action="store_true", help="re-run seeds that have results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        import torch

        torch.set_num_threads(1)
        data = load_setting()
        trained = Trained(data, f"fmnist{TRAIN_POOL}-e{EPOCHS}")
        given = None
        if args.calibration:
            blob = json.loads(args.calibration.read_text())
            given = {"ladders": (blob.get("calibration") or blob)["ladders"], "calibration_id": f"{args.calibration.name} (seed {blob.get('seed', '?')})"}
        for seed in args.seeds:
            path = args.out / f"seed-{seed}.json"
            if path.exists() and json.loads(path.read_text()).get("complete", True) and not args.force:
                print(f"seed {seed}: done before ({path})", flush=True)
                continue
            started = time.perf_counter()
            command = "python -m benchmarks.ladder " + " ".join(sys.argv[1:] if argv is None else argv)
            previous = json.loads(path.read_text()) if path.exists() else {}

            def save(partial, complete=False):
                # Kinds this run did not redo (a run of some kinds only), and the earlier file's calibration,
                # are kept.
                merged = {**previous, **partial, "kinds": {**previous.get("kinds", {}), **partial["kinds"]}, "complete": complete, "command": command}
                merged["wall_seconds"] = time.perf_counter() - started
                path.write_text(json.dumps(merged, indent=2, default=float))

            result = run_seed(data, trained, seed, args.kinds, args.calibrate, lambda m: print(m, flush=True), given, save, args.max_configs)
            save(result, complete=True)
    results = load_results(args.out)
    if results:
        (args.out / "report.md").write_text(report(results))
        plot(results, PLOTS / "ladder.png")
        print(report(results))


if __name__ == "__main__":
    main()
