"""Benchmark: every registered unlearning method against a model retrained from scratch.

Superseded by the suite's `methods` scenario (`python -m benchmarks run methods`, module
`benchmarks.methods`, which adds the seed methods, subjects/misclassify/continual requests, ToW and
the three MIAs). Kept as a standalone entry point; `load_dataset` here is shared with the suite.

Protocol (issue 5; OPTML "full-stack" evaluation, peers.md §2.1):
- Datasets: sklearn digits (the whole set) and a stratified subset of Fashion-MNIST (official
  train/test files; the subset keeps a 2-core CPU run in minutes, its size is recorded).
- Scenarios: 10 % random samples, 10 % of the synthetic subjects (4 samples each, the importer's
  rule), one whole class. Kinds "samples", "subjects", "classes"; goal "forget".
- Per evaluation seed: an original model trained on the whole training split, a reference retrained
  on the retain split with the same recipe (its own seed), and every method that serves the request
  run on the original with that seed. A second retrain with another seed gives the noise floor
  ("retrain (2nd seed)"): no method can be expected to beat it.
- Hyperparameters are chosen on the validation split only, on a separate tuning seed: each method's
  grid is the product of the first two entries of its search space (capped), and the config with
  the smallest Avg. Gap to the tuning seed's reference, measured on validation data, wins. Test data
  is touched once, for the reported numbers.
- Metrics: UA = 100 - forget accuracy, RA, TA, MIA-efficacy (SVC on true-label confidence, shadow
  members = retain, non-members = held-out), Avg. Gap = mean |delta| over the four, wall time of the
  method (one-off costs included) and its ratio to the retrain's wall time. For class requests TA
  and the MIA's non-members use the held-out samples of the retained classes (OPTML class-wise).

`--budget-fraction 0.1` measures the issue's efficiency target instead: every method (tuning included)
runs under a time budget of 10 % of the retrain's wall time and stops where the budget ends; those
results are filed under the scenario "<scenario> @ 10% of retrain time".

Usage:  python -m benchmarks.peer_methods [--datasets digits fashion-mnist] [--seeds 5] [--fmnist-seeds 3] [--max-grid 8]
Writes benchmarks/results/peer_methods.{json,csv,md}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from forgetflow.data.sources import DEBIAN_FASHION_MNIST, load_source
from forgetflow.data.store import LoadedSplit
from forgetflow.data.subjects import assign_subjects
from forgetflow.evaluation import metrics as M
from forgetflow.evaluation import mia
from forgetflow.models import ModelSpec
from forgetflow.params import TrainParams
from forgetflow.training import predict_logits, train_model

RESULTS = Path(__file__).parent / "results"
SCENARIOS = {"random": "samples", "subjects": "subjects", "class": "classes"}
TUNING_SEED = 100
SKIP = {"retrain"}  # the reference itself


@dataclass
class Dataset:
    name: str
    train: LoadedSplit
    val: LoadedSplit
    test: LoadedSplit
    subjects: np.ndarray  # subject index per training sample
    spec: ModelSpec
    recipe: TrainParams


def _take(split_images, split_labels, index) -> LoadedSplit:
    return LoadedSplit(images=split_images[index], labels=split_labels[index], sample_ids=np.asarray(index, dtype=np.int64))


def _stratified(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices, as class-balanced as the labels allow, sorted."""
    picks = []
    classes = np.unique(labels)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        picks.append(rng.choice(idx, size=min(len(idx), n // len(classes)), replace=False))
    return np.sort(np.concatenate(picks))


def load_dataset(name: str, fmnist_train: int, fmnist_test: int, epochs: int | None) -> Dataset:
    rng = np.random.default_rng(0)
    if name == "digits":
        raw = load_source("digits")
        order = rng.permutation(len(raw.labels))
        n_test = int(0.2 * len(order))
        test_idx, pool = np.sort(order[:n_test]), order[n_test:]
        n_val = int(0.1 * len(pool))
        val_idx, train_idx = np.sort(pool[:n_val]), np.sort(pool[n_val:])
        images, labels = raw.images, raw.labels
        test = _take(images, labels, test_idx)
        width, default_epochs = 32, 20
    elif name == "fashion-mnist":
        raw = load_source("fashion-mnist", DEBIAN_FASHION_MNIST)
        images, labels = raw.images, raw.labels
        official_train = np.flatnonzero(raw.official_split == "train")
        official_test = np.flatnonzero(raw.official_split == "test")
        pool = official_train[_stratified(labels[official_train], fmnist_train, rng)]
        pool = rng.permutation(pool)
        n_val = int(0.1 * len(pool))
        val_idx, train_idx = np.sort(pool[:n_val]), np.sort(pool[n_val:])
        test = _take(images, labels, official_test[_stratified(labels[official_test], fmnist_test, rng)])
        width, default_epochs = 16, 15
    else:
        raise SystemExit(f"unknown dataset {name!r}")
    train, val = _take(images, labels, train_idx), _take(images, labels, val_idx)
    subject_names = assign_subjects(len(train.labels), 4, 0)
    subjects = np.array([int(s.split("-")[1]) for s in subject_names])
    pixels = train.images.astype(np.float64) / 255.0
    h, w, c = train.images.shape[1:]
    spec = ModelSpec(arch="small_cnn", in_channels=c, num_classes=int(labels.max()) + 1, image_size=h, width=width,
                     mean=[float(pixels.mean())] * c, std=[float(pixels.std())] * c)
    recipe = TrainParams(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine", epochs=epochs or default_epochs, batch_size=64)
    return Dataset(name, train, val, test, subjects, spec, recipe)


def subset(split: LoadedSplit, mask: np.ndarray) -> LoadedSplit:
    return LoadedSplit(images=split.images[mask], labels=split.labels[mask], sample_ids=split.sample_ids[mask])


def make_request(data: Dataset, scenario: str, seed: int) -> tuple[LoadedSplit, LoadedSplit, np.ndarray]:
    """(forget, retain, forget_classes) for one scenario; the draw depends on the seed only."""
    rng = np.random.default_rng(10_000 + seed)
    n = len(data.train.labels)
    if scenario == "random":
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=n // 10, replace=False)] = True
        classes = np.array([], dtype=np.int64)
    elif scenario == "subjects":
        ids = np.unique(data.subjects)
        chosen = rng.choice(ids, size=max(1, len(ids) // 10), replace=False)
        mask = np.isin(data.subjects, chosen)
        classes = np.array([], dtype=np.int64)
    else:
        cls = int(rng.integers(data.spec.num_classes))
        mask = data.train.labels == cls
        classes = np.array([cls])
    return subset(data.train, mask), subset(data.train, ~mask), classes


def measure(model, forget: LoadedSplit, retain: LoadedSplit, heldout: LoadedSplit, classes: np.ndarray, device: str) -> dict:
    """UA, RA, TA (on `heldout`), MIA-efficacy; for class requests the held-out set drops the forgotten classes."""
    if len(classes):
        heldout = subset(heldout, ~np.isin(heldout.labels, classes))
    out = {}
    logits = {name: predict_logits(model, split.images, device).numpy() for name, split in (("forget", forget), ("retain", retain), ("heldout", heldout))}
    # A diverged model (NaN/inf logits) is measured as what it is, a broken classifier, not skipped.
    out["diverged"] = not all(np.isfinite(v).all() for v in logits.values())
    logits = {k: np.nan_to_num(v, nan=0.0, posinf=1e4, neginf=-1e4) for k, v in logits.items()}
    labels = {"forget": forget.labels, "retain": retain.labels, "heldout": heldout.labels}
    acc = {k: 100.0 * float((logits[k].argmax(1) == labels[k]).mean()) for k in logits}
    conf = {k: mia.true_label_confidence(logits[k], labels[k]) for k in logits}
    out["unlearning_accuracy"] = 100.0 - acc["forget"]
    out["forget_accuracy"] = acc["forget"]
    out["retain_accuracy"] = acc["retain"]
    out["test_accuracy"] = acc["heldout"]
    out["mia_efficacy"] = mia.mia_efficacy(conf["retain"], conf["heldout"], conf["forget"], seed=0, max_per_side=3000)
    return out


class Models:
    """Trained originals and references, cached per (dataset, scenario, seed) within one run."""

    def __init__(self, data: Dataset, device: str):
        self.data, self.device, self.cache = data, device, {}

    def train(self, split: LoadedSplit, seed: int) -> tuple[torch.nn.Module, float]:
        started = time.perf_counter()
        model = train_model(self.data.spec, self.data.recipe, split, device=self.device, seed=seed, progress=False).model
        return model, time.perf_counter() - started

    def original(self, seed: int):
        key = ("original", seed)
        if key not in self.cache:
            self.cache[key] = self.train(self.data.train, seed)
        return self.cache[key]

    def retrain(self, scenario: str, seed: int, retain: LoadedSplit, offset: int = 1000):
        key = ("retrain", scenario, seed, offset)
        if key not in self.cache:
            self.cache[key] = self.train(retain, seed + offset)
        return self.cache[key]


def grid(info, max_grid: int) -> list[dict]:
    """The paper default first, then the product of the first two search-space entries, evenly thinned to `max_grid`."""
    keys = list(info.search_space)[:2]
    combos = [dict(zip(keys, values)) for values in itertools.product(*(info.search_space[k] for k in keys))]
    distinct = [c for c in combos if any(info.defaults.get(k) != v for k, v in c.items())]
    if len(distinct) > max_grid - 1:
        distinct = [distinct[i] for i in np.unique(np.linspace(0, len(distinct) - 1, max_grid - 1).round().astype(int))]
    return [{}] + distinct


def run_method(name: str, model, forget, retain, val, config: dict, seed: int, kind: str, device: str, budget: float | None):
    from forgetflow.methods import unlearn

    return unlearn(name, model, forget, retain=retain, val=val, config=config, seed=seed, device=device, kind=kind, goal="forget", time_budget_s=budget, progress=False)


def tune(infos, models: Models, scenario: str, max_grid: int, device: str, log, budget_fraction: float | None = None) -> dict[str, dict]:
    """Pick each method's config by Avg. Gap on the validation split, on the tuning seed."""
    data, kind = models.data, SCENARIOS[scenario]
    forget, retain, classes = make_request(data, scenario, TUNING_SEED)
    original, _ = models.original(TUNING_SEED)
    reference, retrain_seconds = models.retrain(scenario, TUNING_SEED, retain)
    target = measure(reference, forget, retain, data.val, classes, device)
    chosen = {}
    for info in infos:
        best = None
        for config in grid(info, max_grid):
            try:
                budget = budget_fraction * retrain_seconds if budget_fraction else 2 * retrain_seconds
                result = run_method(info.name, original, forget, retain, data.val, config, TUNING_SEED, kind, device, budget)
            except Exception as exc:  # noqa: BLE001 -- a failing grid point is recorded, not fatal
                log(f"    tune {info.name} {config}: failed: {exc}")
                continue
            gap = M.avg_gap(measure(result.model, forget, retain, data.val, classes, device), target)
            if not math.isnan(gap) and (best is None or gap < best[0]):
                best = (gap, config)
        chosen[info.name] = best[1] if best else {}
        log(f"    tuned {info.name}: {chosen[info.name]} (val Avg. Gap {best[0]:.2f})" if best else f"    tuned {info.name}: every grid point failed")
    return chosen


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["scenario"], row["method"]), []).append(row)
    summary = []
    for (dataset, scenario, method), items in groups.items():
        entry = {"dataset": dataset, "scenario": scenario, "method": method, "seeds": len(items)}
        for key in ("unlearning_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy", "avg_gap", "seconds", "time_ratio"):
            values = np.array([r[key] for r in items], dtype=float)
            entry[key] = float(np.nanmean(values))
            entry[key + "_std"] = float(np.nanstd(values))
        entry["config"] = items[0].get("config", {})
        entry["diverged_runs"] = int(sum(bool(r.get("diverged")) for r in items))
        summary.append(entry)
    return summary


def to_markdown(summary: list[dict], meta: dict) -> str:
    lines = [
        "# Peer unlearning methods vs the retrained reference",
        "",
        f"Measured {meta['finished']} on {meta['device']} ({meta['threads']} thread), torch {meta['torch']}; seeds per dataset {json.dumps(meta['seeds'])}, tuning seed {TUNING_SEED}.",
        f"Data: {json.dumps(meta['data'])}.",
        "Commands (later ones resumed the earlier results): " + "; ".join(f"`{c}`" for c in meta.get("commands", [meta["command"]])) + ".",
        "Mean ± std over seeds. UA = 100 - forget acc, RA retain acc, TA test acc, MIA = MIA-efficacy (SVC on confidence).",
        "Avg. Gap = mean |Δ| to the reference over UA, RA, TA, MIA (lower is better). Time ratio = method wall time / retrain wall time.",
        "",
    ]
    for (dataset, scenario), items in itertools.groupby(sorted(summary, key=lambda e: (e["dataset"], e["scenario"], e["avg_gap"] if e["method"] != "retrain (reference)" else -1)), key=lambda e: (e["dataset"], e["scenario"])):
        lines += [f"## {dataset} — {scenario}", "", "| method | UA | RA | TA | MIA | Avg. Gap | seconds | time ratio | config (tuned on val) |", "|---|---|---|---|---|---|---|---|---|"]
        for e in items:
            cell = lambda k: f"{e[k]:.2f} ± {e[k + '_std']:.2f}"  # noqa: E731
            name = e["method"] + (f" (diverged in {e['diverged_runs']} runs)" if e.get("diverged_runs") else "")
            lines.append(f"| {name} | {cell('unlearning_accuracy')} | {cell('retain_accuracy')} | {cell('test_accuracy')} | {cell('mia_efficacy')} | {cell('avg_gap')} | {e['seconds']:.2f} | {e['time_ratio']:.3f} | {json.dumps(e['config']) if e['config'] else ''} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", nargs="*", default=None, help="registered method names (default: every method that serves the request)")
    parser.add_argument("--max-grid", type=int, default=12)
    parser.add_argument("--fmnist-train", type=int, default=5000, help="Fashion-MNIST training pool size (stratified subset)")
    parser.add_argument("--fmnist-test", type=int, default=2000)
    parser.add_argument("--fmnist-seeds", type=int, default=None, help="seeds for Fashion-MNIST (default: --seeds)")
    parser.add_argument("--fmnist-scenarios", nargs="+", default=None, choices=list(SCENARIOS), help="scenarios for Fashion-MNIST (default: --scenarios)")
    parser.add_argument("--epochs", type=int, default=None, help="override the training recipe's epochs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS / "peer_methods"))
    parser.add_argument("--budget-fraction", type=float, default=None, help="run every method under a time budget of this fraction of the retrain's wall time (tuning included); results go under the scenario name '<scenario> @ budget'")
    parser.add_argument("--resume", action="store_true", help="keep the (dataset, scenario) results already in <out>.json and run only the missing ones")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    from forgetflow.methods import list_methods

    def log(message: str) -> None:
        print(message, flush=True)

    rows: list[dict] = []
    meta = {"command": "python -m benchmarks.peer_methods " + " ".join(argv if argv is not None else sys.argv[1:]), "device": args.device, "threads": args.threads,
            "torch": torch.__version__, "seeds": {}, "data": {}, "tuned": {}}
    started = time.perf_counter()
    done: set[tuple[str, str]] = set()
    if args.resume and Path(args.out).with_suffix(".json").exists():
        previous = json.loads(Path(args.out).with_suffix(".json").read_text())
        rows = previous["rows"]
        for key in ("seeds", "data", "tuned"):
            meta[key].update(previous["meta"].get(key, {}))
        meta["commands"] = previous["meta"].get("commands", [previous["meta"]["command"]]) + [meta["command"]]
        done = {(r["dataset"], r["scenario"]) for r in rows}
    for name in args.datasets:
        data = load_dataset(name, args.fmnist_train, args.fmnist_test, args.epochs)
        meta["data"][name] = {"train": len(data.train.labels), "val": len(data.val.labels), "test": len(data.test.labels), "width": data.spec.width, "epochs": data.recipe.epochs}
        models = Models(data, args.device)
        scenarios = (args.fmnist_scenarios or args.scenarios) if name == "fashion-mnist" else args.scenarios
        seeds = (args.fmnist_seeds or args.seeds) if name == "fashion-mnist" else args.seeds
        meta["seeds"][name] = list(range(seeds))
        for scenario in scenarios:
            label = scenario if not args.budget_fraction else f"{scenario} @ {args.budget_fraction:.0%} of retrain time"
            if (name, label) in done:
                log(f"{name} / {scenario}: kept from the previous run")
                continue
            kind = SCENARIOS[scenario]
            infos = [i for i in list_methods() if i.serves(kind, "forget") and i.name not in SKIP and "stats" not in i.needs and (args.methods is None or i.name in args.methods)]
            log(f"[{time.perf_counter() - started:7.1f}s] {name} / {scenario}: tuning {len(infos)} methods")
            chosen = tune(infos, models, scenario, args.max_grid, args.device, log, args.budget_fraction)
            meta["tuned"][f"{name}/{label}"] = chosen
            for seed in range(seeds):
                forget, retain, classes = make_request(data, scenario, seed)
                original, _ = models.original(seed)
                reference, retrain_seconds = models.retrain(scenario, seed, retain)
                target = measure(reference, forget, retain, data.test, classes, args.device)
                base = {"dataset": name, "scenario": label, "seed": seed, "forget_size": len(forget.labels)}
                budget = args.budget_fraction * retrain_seconds if args.budget_fraction else None
                rows.append({**base, "method": "retrain (reference)", **target, "avg_gap": 0.0, "seconds": retrain_seconds, "time_ratio": 1.0})
                second, second_seconds = models.retrain(scenario, seed, retain, offset=2000)
                got = measure(second, forget, retain, data.test, classes, args.device)
                rows.append({**base, "method": "retrain (2nd seed)", **got, "avg_gap": M.avg_gap(got, target), "seconds": second_seconds, "time_ratio": second_seconds / retrain_seconds})
                got = measure(original, forget, retain, data.test, classes, args.device)
                rows.append({**base, "method": "original (no unlearning)", **got, "avg_gap": M.avg_gap(got, target), "seconds": 0.0, "time_ratio": 0.0})
                for info in infos:
                    try:
                        result = run_method(info.name, original, forget, retain, data.val, chosen[info.name], seed, kind, args.device, budget)
                    except Exception as exc:  # noqa: BLE001
                        log(f"    {info.name} seed {seed}: failed: {exc}")
                        continue
                    got = measure(result.model, forget, retain, data.test, classes, args.device)
                    rows.append({**base, "method": info.name, **got, "avg_gap": M.avg_gap(got, target), "seconds": result.seconds, "time_ratio": result.seconds / retrain_seconds, "config": chosen[info.name], "stopped_because": result.stopped_because})
                log(f"[{time.perf_counter() - started:7.1f}s] {name} / {scenario} / seed {seed} done")
            write(Path(args.out), rows, meta, started)  # after every scenario: a long run leaves usable results
    write(Path(args.out), rows, meta, started)
    log(f"wrote {args.out}.json/.csv/.md in {meta['total_seconds']:.0f}s")


def write(out: Path, rows: list[dict], meta: dict, started: float) -> None:
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    meta["total_seconds"] = time.perf_counter() - started
    summary = summarise(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1, default=float))
    keys = ["dataset", "scenario", "method", "seeds", "unlearning_accuracy", "unlearning_accuracy_std", "retain_accuracy", "retain_accuracy_std", "test_accuracy", "test_accuracy_std",
            "mia_efficacy", "mia_efficacy_std", "avg_gap", "avg_gap_std", "seconds", "seconds_std", "time_ratio", "time_ratio_std"]
    with out.with_suffix(".csv").open("w") as handle:
        handle.write(",".join(keys) + "\n")
        for e in summary:
            handle.write(",".join(str(round(e[k], 4)) if isinstance(e[k], float) else str(e[k]) for k in keys) + "\n")
    out.with_suffix(".md").write_text(to_markdown(summary, meta))


if __name__ == "__main__":
    main()
