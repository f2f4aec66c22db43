"""Scenario `scaling`: cost of unlearning against the retrain as the work grows, on Fashion-MNIST.

1. Forget-set size 1 %, 5 %, 10 %, 20 % of the training subset of the methods scenario: the
   retrain on the retain set and every sample-level method with its paper defaults (one seed);
   wall time, peak Python heap (tracemalloc, which sees NumPy buffers but not torch's allocator),
   the process's peak RSS so far (ru_maxrss) and, on CUDA, torch.cuda.max_memory_allocated.
2. Training-set size 10k, 30k, 60k (quick: 1k, 3k) with 10 % forgotten: the retrain with the full
   recipe is measured at the smallest size; at the larger sizes one epoch is measured and the
   recipe's cost extrapolated as per-epoch time x epochs (every epoch costs the same; the cosine
   schedule changes only the learning rate), labelled "extrapolated". The original at every size
   is trained for one epoch only: method costs do not depend on how well it was trained (except
   early-stopping rules, none of the methods below has one). The methods are the ones whose cost
   does not grow with epochs over the retain set (gradient ascent, SSD, Bad Teacher); the others
   make E passes over the retain set, i.e. E / recipe-epochs of a retrain, at any size.
3. Requests per batch (1, 10, 100): measured by the deletion-flow scenario, plotted here.

    python -m benchmarks run scaling [--quick]
    python -m benchmarks.scaling [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.environment import record

RESULTS = Path(__file__).parent / "results"
FRACTIONS = (0.01, 0.05, 0.10, 0.20)
SIZE_METHODS = ("gradient_ascent", "ssd", "bad_teacher")


def peak_memory(device: str):
    """Context-free helpers: start() before a run, stop() after it returns the three peaks in MiB."""
    import torch

    def start():
        tracemalloc.start()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()

    def stop() -> dict:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out = {"python_peak_mib": peak / 2**20, "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if device.startswith("cuda"):
            out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return out

    return start, stop


def forget_size_curve(plan, device: str, quick: bool, log) -> list[dict]:
    from benchmarks import methods as M
    from forgetflow.methods import unlearn

    data = M.load("fashion-mnist", plan)
    models = M.Models(data, device)
    original, original_seconds = models.original(0)
    stats = models.stats(0)
    infos = [i for i in M.methods_for("random", None) if not quick or i.name in ("finetune", "gradient_ascent", "ssd")]
    start, stop = peak_memory(device)
    rows = []
    n = len(data.train.labels)
    for fraction in FRACTIONS:
        rng = np.random.default_rng(7)
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=max(1, int(round(fraction * n))), replace=False)] = True
        forget, retain = M._subset(data.train, mask), M._subset(data.train, ~mask)
        start()
        _, retrain_seconds = models.train(retain, 1)
        rows.append({"fraction": fraction, "forget_size": int(mask.sum()), "method": "retrain", "seconds": retrain_seconds, "time_ratio": 1.0, **stop()})
        for info in infos:
            start()
            try:
                result = unlearn(info.name, original, forget, retain=retain, val=data.val, stats=stats if "stats" in info.needs else None, seed=0, device=device, kind="samples", time_budget_s=2 * retrain_seconds, progress=False)
            except Exception as exc:  # noqa: BLE001
                stop()
                log(f"  {info.name} at {fraction:.0%}: failed: {exc}")
                continue
            rows.append({"fraction": fraction, "forget_size": int(mask.sum()), "method": info.name, "seconds": result.seconds, "time_ratio": result.seconds / retrain_seconds, "stopped_because": result.stopped_because, **stop()})
        log(f"forget {fraction:.0%}: retrain {retrain_seconds:.1f}s, {len(infos)} methods done")
    return rows, {"train": n, "epochs": data.recipe.epochs, "width": data.spec.width}


def train_size_curve(plan, device: str, quick: bool, log) -> list[dict]:
    from benchmarks import methods as M
    from benchmarks.datasets import load_dataset
    from forgetflow.methods import unlearn

    sizes = (1000, 3000) if quick else (10_000, 30_000, 60_000)
    start, stop = peak_memory(device)
    rows = []
    for i, size in enumerate(sizes):
        data = load_dataset("fashion-mnist", size, 1000, plan.epochs["fashion-mnist"])
        n = len(data.train.labels)
        mask = np.zeros(n, dtype=bool)
        mask[np.random.default_rng(7).choice(n, size=n // 10, replace=False)] = True
        forget, retain = M._subset(data.train, mask), M._subset(data.train, ~mask)
        one_epoch = data.recipe.model_copy(update={"epochs": 1})
        from forgetflow.training import train_model

        started = time.perf_counter()
        original = train_model(data.spec, one_epoch, data.train, device=device, seed=0, progress=False).model
        epoch_seconds = time.perf_counter() - started
        original.to(device)
        if i == 0:  # the full recipe, measured
            start()
            started = time.perf_counter()
            train_model(data.spec, data.recipe, retain, device=device, seed=1, progress=False)
            retrain_seconds, how = time.perf_counter() - started, "measured"
            rows.append({"train_size": n, "method": "retrain", "seconds": retrain_seconds, "how": how, **stop()})
        else:  # per-epoch time on the retain set x recipe epochs
            start()
            started = time.perf_counter()
            train_model(data.spec, one_epoch, retain, device=device, seed=1, progress=False)
            retrain_seconds, how = (time.perf_counter() - started) * data.recipe.epochs, f"extrapolated from 1 of {data.recipe.epochs} epochs"
            rows.append({"train_size": n, "method": "retrain", "seconds": retrain_seconds, "how": how, **stop()})
        for name in SIZE_METHODS:
            start()
            try:
                result = unlearn(name, original, forget, retain=retain, seed=0, device=device, kind="samples", progress=False)
            except Exception as exc:  # noqa: BLE001
                stop()
                log(f"  {name} at {n}: failed: {exc}")
                continue
            rows.append({"train_size": n, "method": name, "seconds": result.seconds, "how": "measured", "time_ratio": result.seconds / retrain_seconds, **stop()})
        log(f"train {n}: one epoch {epoch_seconds:.1f}s, retrain {retrain_seconds:.1f}s ({how})")
    return rows


def run(*, quick: bool, device: str, out: Path, command: str) -> dict:
    import torch

    from benchmarks import methods as M

    torch.set_num_threads(1)
    plan = M.Plan.make(quick, None)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] scaling: {message}", flush=True)

    forget_rows, data_info = forget_size_curve(plan, device, quick, log)
    size_rows = train_size_curve(plan, device, quick, log)
    result = {"environment": record(device=device, quick=quick, seeds=[0], command=command), "forget_size_data": data_info,
              "forget_size": forget_rows, "train_size": size_rows, "seconds": time.perf_counter() - started}
    (out / "scaling.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    log(f"wrote {out / 'scaling.json'}")
    return result


# Rendering ---------------------------------------------------------------------------------
def _curve(ax, rows, x_key, methods, log_y=True):
    for method in methods:
        pts = sorted((r[x_key], r["seconds"]) for r in rows if r["method"] == method)
        if pts:
            style = dict(color="black", lw=2.5) if method == "retrain" else {}
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method, **style)
    if log_y:
        ax.set_yscale("log")


def method_order(rows: list[dict]) -> list[str]:
    """The retrain first, then the methods by name: a fixed order for plots and tables (a set's
    iteration order changes from process to process)."""
    return sorted({r["method"] for r in rows}, key=lambda m: (m != "retrain", m))


def plot(result: dict, batching: dict | None, folder: Path) -> list[Path]:
    from forgetflow.plotting import pyplot

    plt = pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rows = result["forget_size"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _curve(ax, [dict(r, pct=100 * r["fraction"]) for r in rows], "pct", method_order(rows))
    ax.set_xlabel("forget set, % of the training set")
    ax.set_ylabel("wall time (s, log)")
    ax.set_title(f"Fashion-MNIST ({result['forget_size_data']['train']} train): cost vs forget-set size")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(folder / "scaling_forget_size.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    rows = result["train_size"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _curve(ax, rows, "train_size", ["retrain", *SIZE_METHODS])
    for r in rows:
        if r["method"] == "retrain" and r["how"] != "measured":
            # below and left of the point, clear of the line and of the plot's right edge
            ax.annotate("extrapolated", (r["train_size"], r["seconds"]), xytext=(-8, -12), textcoords="offset points", ha="right", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("training-set size (log)")
    ax.set_ylabel("wall time (s, log)")
    ax.set_title("Fashion-MNIST: cost vs training-set size (10 % forgotten)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(folder / "scaling_train_size.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    if batching and batching.get("batches"):
        batches = batching["batches"]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = [b["requests"] for b in batches]
        ax.plot(xs, [b["total_seconds"] for b in batches], marker="o", label="deletion batch, total")
        ax.plot(xs, [b["unlearning_seconds"] for b in batches], marker="o", label="unlearning")
        ax.plot(xs, [b["reference_seconds"] for b in batches], marker="o", color="black", lw=2.5, label="reference retrain")
        ax.plot(xs, [b["overhead_seconds"] for b in batches], marker="o", label="pipeline overhead")
        ax.plot(xs, [batches[0]["total_seconds"] * x for x in xs], ls="--", color="grey", label="one batch per request (1-request total x n)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("requests per batch (log)")
        ax.set_ylabel("wall time (s, log)")
        ax.set_title("digits deletion flow: cost vs requests per batch")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(folder / "scaling_batch.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def render(results_dir: Path, plots_dir: Path, prefix: str = "benchmarks/plots/") -> str | None:
    path = results_dir / "scaling.json"
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    flow = results_dir / "deletion_flow.json"
    batching = json.loads(flow.read_text()) if flow.exists() else None
    env = r["environment"]
    d = r["forget_size_data"]
    lines = ["## Speed and scaling", "",
             f"Command: `{env['command']}` — {'QUICK' if env['quick'] else 'full'} mode, device {env['device']}, {r['seconds'] / 60:.1f} min, one seed, paper-default configs, single-threaded.", "",
             f"### Cost against forget-set size (Fashion-MNIST, {d['train']} training images, recipe {d['epochs']} epochs)", "",
             "Peak memory: Python heap peak (tracemalloc: NumPy and Python objects, not torch's CPU allocator) and the process's peak RSS so far (ru_maxrss, monotone over the run)"
             + (", CUDA peak allocated" if env["device"].startswith("cuda") else "") + ".", ""]
    fractions = sorted({x["fraction"] for x in r["forget_size"]})
    methods = method_order(r["forget_size"])
    lines += ["| method | " + " | ".join(f"{100 * f:.0f} %: s (× retrain)" for f in fractions) + " | heap peak at 10 % (MiB) | RSS peak (MiB) |", "|---" * (len(fractions) + 3) + "|"]
    for m in methods:
        cells = []
        for f in fractions:
            x = next((y for y in r["forget_size"] if y["method"] == m and y["fraction"] == f), None)
            cells.append(f"{x['seconds']:.2f} ({x['time_ratio']:.2f})" if x else "")
        at10 = next((y for y in r["forget_size"] if y["method"] == m and abs(y["fraction"] - 0.1) < 1e-9), None)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {at10['python_peak_mib']:.1f} | {at10['maxrss_mib']:.0f} |" if at10 else f"| {m} | " + " | ".join(cells) + " | | |")
    lines += ["", "### Cost against training-set size (Fashion-MNIST, 10 % forgotten)", "", "| training images | method | seconds | how | × retrain | heap peak (MiB) |", "|---|---|---|---|---|---|"]
    for x in r["train_size"]:
        ratio = f"{x['time_ratio']:.3f}" if "time_ratio" in x else "1"
        lines.append(f"| {x['train_size']} | {x['method']} | {x['seconds']:.1f} | {x['how']} | {ratio} | {x['python_peak_mib']:.1f} |")
    lines.append("")
    if batching and batching.get("batches"):
        lines += ["### Cost against requests per batch (digits, deletion flow)", "", "From the deletion-flow scenario: one Prefect deletion batch serves all its requests with one unlearning run and one reference retrain.", "",
                  "| requests | samples | total (s) | unlearning (s) | reference retrain (s) | evaluation (s) | overhead (s) |", "|---|---|---|---|---|---|---|"]
        for b in batching["batches"]:
            lines.append(f"| {b['requests']} | {b['samples']} | {b['total_seconds']:.1f} | {b['unlearning_seconds']:.1f} | {b['reference_seconds']:.1f} | {b['evaluation_seconds']:.1f} | {b['overhead_seconds']:.1f} |")
        lines.append("")
    for p in plot(r, batching, plots_dir):
        lines.append(f"![{p.stem}]({prefix}{p.name})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    run(quick=args.quick, device=args.device, out=args.out, command="python -m benchmarks.scaling " + " ".join(argv if argv is not None else sys.argv[1:]))


if __name__ == "__main__":
    main()
