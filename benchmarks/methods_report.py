"""The `methods` scenario's results as BENCHMARKS.md sees them: per-table summaries (mean and
standard deviation over seeds), the Markdown tables, the issue targets read off the rows, and the
Avg. Gap vs time plots. Reads `benchmarks/results/methods/*.json`, written by `benchmarks.methods`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

METRICS = ("unlearning_accuracy", "forget_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy", "mia_loss", "mia_entropy", "forget_class_test_accuracy", "test_drop", "avg_gap", "tow", "seconds", "time_ratio")


def load_results(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((results / "methods").glob("*.json"))]


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["scenario"], row["method"]), []).append(row)
    summary = []
    for (dataset, scenario, method), items in groups.items():
        entry = {"dataset": dataset, "scenario": scenario, "method": method, "seeds": len(items), "config": items[0].get("config", {}),
                 "diverged_runs": int(sum(bool(r.get("diverged")) for r in items)), "budget_stops": int(sum("budget" in str(r.get("stopped_because", "")) for r in items))}
        for key in METRICS:
            values = np.array([r.get(key, float("nan")) for r in items], dtype=float)
            finite = values[np.isfinite(values)]
            entry[key] = float(finite.mean()) if len(finite) else float("nan")
            entry[key + "_std"] = float(finite.std()) if len(finite) else float("nan")
        summary.append(entry)
    return summary


SANITY = ("retrain (reference)", "retrain (2nd seed)", "original (no unlearning)")


def find(summary: list[dict], dataset: str, scenario: str, method: str) -> dict | None:
    """The summary entry of one method in one table, or None."""
    return next((e for e in summary if e["dataset"] == dataset and e["scenario"] == scenario and e["method"] == method), None)


def _cell(e: dict, key: str, digits: int = 2) -> str:
    if math.isnan(e.get(key, float("nan"))):
        return ""
    return f"{e[key]:.{digits}f} ± {e[key + '_std']:.{digits}f}"


def to_markdown(results: list[dict]) -> str:
    rows = [r for res in results for r in res["rows"]]
    summary = summarise(rows)
    lines = ["## Unlearning methods vs the retrained reference", ""]
    for res in results:
        m = res["meta"]
        env = m["environment"]
        data = ", ".join(f"{k} {v}" for k, v in m["data"].items())
        lines.append(f"- `{env['command']}`: {data}; seeds {env['seeds']} (tuning seed {m['tuning_seed']}); {'QUICK' if env['quick'] else 'full'} mode; device {env['device']}; {m['seconds'] / 60:.1f} min")
        for cut in m.get("cut", []):
            lines.append(f"  - **cut by the suite's deadline:** {cut['scenario']} ran {cut['seeds_run']} of {cut['seeds_planned']} seeds")
        for scenario, why in m.get("superseded", {}).items():
            lines.append(f"  - {scenario}: rows taken out of this run, {why}")
    lines += [
        "",
        "Mean ± std over seeds. UA = 100 − forget accuracy, RA = retain accuracy, TA = test accuracy (class requests: retained classes only); "
        "MIA-E = MIA-efficacy (SVC on true-label confidence; target = reference), MIA-L = loss-threshold MIA accuracy (challenge kit; target = reference, ~50), "
        "MIA-H = entropy MIA (members predicted among forget samples; target = reference). Avg. Gap = mean |Δ| to the reference over UA, RA, TA, MIA-E (lower is better); "
        "ToW = (1−|ΔFA|/100)(1−|ΔRA|/100)(1−|ΔTA|/100) (higher is better). Time ratio = method wall time (one-off costs included) / the reference retrain's wall time. "
        "Sanity rows: the reference, a second retrain with another seed (the distance that counts as indistinguishable) and the original model.",
        "",
    ]
    order = {"random": 0, "random @ 10% time": 1, "subjects": 2, "class": 3, "continual": 4}
    keyed = sorted({(e["dataset"], e["scenario"]) for e in summary}, key=lambda t: (t[0], order.get(t[1], 5), t[1]))
    for dataset, scenario in keyed:
        items = [e for e in summary if e["dataset"] == dataset and e["scenario"] == scenario]
        items.sort(key=lambda e: (e["method"] not in SANITY, SANITY.index(e["method"]) if e["method"] in SANITY else 0, e["avg_gap"] if not scenario.startswith("misclassify") else (e["forget_accuracy"], e["test_drop"])))
        lines += [f"### {dataset} — {scenario}", ""]
        extra = " forget-class test acc |" if scenario == "class" else (" test drop |" if scenario.startswith("misclassify") else "")
        lines += [f"| method | seeds | UA | RA | TA | MIA-E | MIA-L | MIA-H | Avg. Gap | ToW |{extra} seconds | time ratio |", "|---" * (12 + bool(extra)) + "|"]
        for e in items:
            note = f" (diverged {e['diverged_runs']}×)" if e["diverged_runs"] else ""
            note += f" (budget stop {e['budget_stops']}×)" if e["budget_stops"] else ""
            more = f" {_cell(e, 'forget_class_test_accuracy')} |" if scenario == "class" else (f" {_cell(e, 'test_drop')} |" if scenario.startswith("misclassify") else "")
            lines.append(f"| {e['method']}{note} | {e['seeds']} | {_cell(e, 'unlearning_accuracy')} | {_cell(e, 'retain_accuracy')} | {_cell(e, 'test_accuracy')} | {_cell(e, 'mia_efficacy')} | {_cell(e, 'mia_loss')} | {_cell(e, 'mia_entropy')} | "
                         f"{_cell(e, 'avg_gap')} | {_cell(e, 'tow', 3)} |{more} {e['seconds']:.2f} | {e['time_ratio']:.3f} |")
        lines.append("")
    lines += ["### Selected hyperparameters (validation only, tuning seed)", "",
              "Every method's grid (the paper default first, then the product of the first two search-space entries of the registry, thinned) is run on the tuning seed; "
              "the config with the smallest validation Avg. Gap wins (misclassify: among configs within 2 points of the original's validation accuracy, the lowest forget accuracy, then the least drop). `{}` = paper defaults. "
              "SVD projection selects its alphas on validation itself; continual reuses the random scenario's selection. Raw: `benchmarks/results/methods/*.json` (`selected`).", "",
              "| dataset | scenario | method | selected config | validation score | grid size |", "|---|---|---|---|---|---|"]
    for res in results:
        dataset = res["rows"][0]["dataset"] if res["rows"] else "?"
        for key, sel in res["selected"].items():
            scenario, method = key.rsplit("/", 1)
            name, value = next(((k, v) for k, v in sel.items() if k.startswith("val")), ("", None))
            score = f"{name} {value:.2f}" if value is not None else "every grid point failed"
            lines.append(f"| {dataset} | {scenario} | {method} | `{json.dumps(sel['config'])}` | {score} | {len(sel['grid'])} |")
    lines.append("")
    return "\n".join(lines)


def targets(results: list[dict]) -> list[str]:
    """The issue targets, checked from the rows (never asserted in tests)."""
    summary = summarise([r for res in results for r in res["rows"]])
    out = []
    fashion = sorted({e["dataset"] for e in summary if e["dataset"].startswith("fashion-mnist")})
    for dataset, scenario in ((d, s) for d in fashion for s in ("random @ 10% time", "random")):
        items = [e for e in summary if e["dataset"] == dataset and e["scenario"] == scenario and e["method"] not in SANITY]
        fits = [e for e in items if e["time_ratio"] <= 0.10]
        if items:
            best = min(fits, key=lambda e: e["avg_gap"]) if fits else None
            floor = find(summary, dataset, scenario, "retrain (2nd seed)")
            untouched = find(summary, dataset, scenario, "original (no unlearning)")
            text = f"best within 10 % of the retrain's time: **{best['method']}**, Avg. Gap {best['avg_gap']:.2f} ± {best['avg_gap_std']:.2f} at {100 * best['time_ratio']:.1f} % of the retrain's time" if best else "no method ran within 10 % of the retrain's time"
            met = bool(best and best["avg_gap"] <= 1.0)
            # the two anchors a reader needs: what counts as indistinguishable, and where doing nothing lands
            anchors = (f"; second retrain (noise floor) {floor['avg_gap']:.2f} ± {floor['avg_gap_std']:.2f}" if floor else "") + (f"; original, no unlearning, {untouched['avg_gap']:.2f} ± {untouched['avg_gap_std']:.2f}" if untouched else "")
            out.append(f"| {dataset} {scenario}: best method within Avg. Gap 1.0 at ≤ 10 % of the retrain's time | {text}{anchors} | {'**met**' if met else '**not met**'} |")
    for dataset in sorted({e["dataset"] for e in summary if e["scenario"] == "class"}):
        original = find(summary, dataset, "class", "original (no unlearning)")
        for method in ("svd_projection", "pgu"):
            e = find(summary, dataset, "class", method)
            if e is None or original is None:
                continue
            drop = original["test_accuracy"] - e["test_accuracy"]
            met = e["forget_class_test_accuracy"] <= 1.0 and drop <= 2.0
            out.append(f"| {dataset} class: {method} forget-class test acc ≤ 1 % and retain-class acc within 2 points of the original | forget-class {e['forget_class_test_accuracy']:.2f} ± {e['forget_class_test_accuracy_std']:.2f} %, retain-class drop {drop:.2f} (mean over seeds) | {'**met**' if met else '**not met**'} |")
    return out + seed_method_targets([r for res in results for r in res["rows"]])


# Issue 4's targets for the seed-paper methods, checked seed by seed against that seed's own
# reference and original. Each check: (what is measured, its value on a row, the bound, unit).
def _svd_checks(row: dict, reference: dict, original: dict) -> list[tuple]:
    return [("forget-class acc", row["forget_class_test_accuracy"], 1.0, " %"), ("retain-class drop", original["test_accuracy"] - row["test_accuracy"], 2.0, " points"),
            ("time", 100 * row["time_ratio"], 2.0, " %")]


def _pgu_checks(row: dict, reference: dict, original: dict) -> list[tuple]:
    gaps = [(f"{name}-acc gap", abs(row[f"{name}_accuracy"] - reference[f"{name}_accuracy"]), 2.0, " points") for name in ("forget", "retain", "test")]
    return gaps + [("time", 100 * row["time_ratio"], 10.0, " %")]


def _l2ul_checks(row: dict, reference: dict, original: dict) -> list[tuple]:
    return [("forget acc", row["forget_accuracy"], 0.0, " %"), ("test drop", row["test_drop"], 2.0, " points"), ("time", 100 * row["time_ratio"], 5.0, " %")]


SEED_METHOD_TARGETS = (
    ("svd_projection", ("class",), "forget-class test acc ≤ 1 %, retain-class acc within 2 points of the original, ≤ 2 % of the retrain's time", _svd_checks),
    ("pgu", ("random", "random @ 10% time"), "forget, retain and test acc each within 2 points of the reference, ≤ 10 % of the retrain's time", _pgu_checks),
    ("l2ul", ("misclassify 16", "misclassify 64", "misclassify 128"), "forget acc 0 %, test drop ≤ 2 points, ≤ 5 % of the retrain's time", _l2ul_checks),
)


def seed_method_targets(rows: list[dict]) -> list[str]:
    """One target row per seed-paper method and table: how many seeds meet the whole target, and
    for each check missed, on how many seeds and the range of the missing values."""
    by_key = {(r["dataset"], r["scenario"], r["seed"], r["method"]): r for r in rows}
    out = []
    for method, scenarios, target, checks_of in SEED_METHOD_TARGETS:
        for dataset, scenario in sorted({(r["dataset"], r["scenario"]) for r in rows if r["method"] == method and r["scenario"] in scenarios}):
            per_seed = []
            for row in (r for r in rows if (r["dataset"], r["scenario"], r["method"]) == (dataset, scenario, method)):
                reference = by_key.get((dataset, scenario, row["seed"], "retrain (reference)"))
                original = by_key.get((dataset, scenario, row["seed"], "original (no unlearning)"))
                if reference is not None and original is not None:
                    per_seed.append(checks_of(row, reference, original))
            if not per_seed:
                continue
            passed = sum(all(value <= bound for _, value, bound, _ in checks) for checks in per_seed)
            misses = []
            for i, (name, _, bound, unit) in enumerate(per_seed[0]):
                bad = [checks[i][1] for checks in per_seed if checks[i][1] > bound]
                if bad:
                    low, high = f"{min(bad):.1f}", f"{max(bad):.1f}"
                    span = low if low == high else f"{low}–{high}"
                    misses.append(f"{name} {span}{unit} on {len(bad)}")
            measured = f"{passed} of {len(per_seed)} seeds meet all" + (f"; missed: {', '.join(misses)}" if misses else "")
            out.append(f"| {dataset} {scenario}: {method} (issue 4) {target} | {measured} | {'**met**' if passed == len(per_seed) else '**not met**'} |")
    return out


def plot(results: list[dict], folder: Path) -> list[Path]:
    """Avg. Gap against time ratio per dataset for the random scenarios (lower-left is better)."""
    from forgetflow.plotting import pyplot

    plt = pyplot()
    summary = summarise([r for res in results for r in res["rows"]])
    paths = []
    for dataset in sorted({e["dataset"] for e in summary}):
        items = [e for e in summary if e["dataset"] == dataset and e["scenario"] in ("random", "random @ 10% time") and e["method"] not in ("retrain (reference)", "original (no unlearning)")]
        if not items:
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        # one collapsed method must not squash the rest: gaps past `top` sit on the top edge, valued
        top = max(2.5, 2.0 * float(np.nanmedian([e["avg_gap"] for e in items])) + 1.0)
        for scenario, marker in (("random", "o"), ("random @ 10% time", "s")):
            pts = [e for e in items if e["scenario"] == scenario]
            if not pts:
                continue
            ax.scatter([max(e["time_ratio"], 1e-3) for e in pts], [min(e["avg_gap"], top) for e in pts], marker=marker, label=scenario)
            for e in pts:
                label = e["method"] if e["avg_gap"] <= top else f"{e['method']} ({e['avg_gap']:.1f}, off scale)"
                ax.annotate(label, (max(e["time_ratio"], 1e-3), min(e["avg_gap"], top)), fontsize=7)
        for scenario, style in (("random", ":"), ("random @ 10% time", "-.")):  # where doing nothing lands
            untouched = find(summary, dataset, scenario, "original (no unlearning)")
            if untouched:
                ax.axhline(min(untouched["avg_gap"], top), color="tab:red", ls=style, lw=0.9, label=f"original, no unlearning ({scenario})")
        ax.set_ylim(0, top * 1.05)
        ax.axvline(0.1, color="grey", ls="--", lw=0.8)
        ax.axhline(1.0, color="grey", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("wall time / retrain wall time")
        ax.set_ylabel("Avg. Gap to the retrain (test)")
        ax.set_title(f"{dataset}: 10 % random forgetting")
        ax.legend(fontsize=8)
        fig.tight_layout()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"methods_{re.sub(r'[^a-z0-9]+', '-', dataset.lower()).strip('-')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def render(results_dir: Path, plots_dir: Path, prefix: str = "benchmarks/plots/") -> str | None:
    results = load_results(results_dir)
    if not results:
        return None
    text = to_markdown(results)
    for path in plot(results, plots_dir):
        text += f"\n![{path.stem}]({prefix}{path.name})\n"
    return text
