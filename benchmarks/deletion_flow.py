"""Deletion-flow timings on digits (bootstrap excluded), through the real Prefect flow.

    python -m benchmarks.deletion_flow

1. One batch of one request (the reference retrained): total wall time, and the pipeline's own
   overhead = total - (unlearning + reference training + evaluation compute).
2. A batch of 100 requests against a batch of one (same samples per request).
3. The whole `forgetflow demo` (bootstrap + deletion batch) from a fresh workspace.
Targets: overhead <= 10 s; demo <= 120 s; 100 requests <= 2x one request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.environment import describe, markdown_line

RESULTS = Path(__file__).parent / "results"
SAMPLES_PER_REQUEST = 2


def _prepare(workspace: Path):
    from forgetflow.registration import bootstrap_workspace
    from forgetflow.settings import load_settings

    shutil.copy(Path(__file__).resolve().parent.parent / "params.yaml", workspace / "params.yaml")
    settings = load_settings(workspace)
    bootstrap_workspace(settings, "digits")
    return settings


def _batch(settings, n_requests: int, offset: int) -> dict:
    from flows.deletion import process_deletions
    from forgetflow.data.store import DatasetVersion
    from forgetflow.requests.intake import submit

    manifest = DatasetVersion(settings.data_dir / "digits").manifest
    train = manifest[manifest.split == "train"].sample_id.astype(int).tolist()
    for i in range(n_requests):
        ids = train[offset + i * SAMPLES_PER_REQUEST : offset + (i + 1) * SAMPLES_PER_REQUEST]
        submit(settings, {"kind": "samples", "ids": ids, "reason": "benchmark", "requested_by": "bench"})
    started = time.perf_counter()
    summary = process_deletions(workspace=str(settings.workspace), progress=False)[0]
    total = time.perf_counter() - started
    steps = summary["step_seconds"]
    compute = sum(m.get("seconds") or 0 for m in summary["methods"]) + (summary["reference"].get("seconds") or 0) + steps.get("evaluated", 0)
    return {"requests": n_requests, "samples": n_requests * SAMPLES_PER_REQUEST, "total_seconds": total, "compute_seconds": compute, "overhead_seconds": total - compute, "steps": steps, "gate_passed": summary["gate"].get("passed")}


def _start_prefect() -> float:
    """Start the embedded Prefect server once, as a served deployment has it running already;
    its start-up is reported on its own row, not as per-batch overhead."""
    from prefect import flow

    @flow(name="forgetflow-benchmark-warm-up")
    def warm_up() -> None:
        return None

    started = time.perf_counter()
    warm_up()
    return time.perf_counter() - started


def _demo_seconds() -> float:
    workspace = Path(tempfile.mkdtemp(prefix="forgetflow-demo-"))
    try:
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "forgetflow"), "demo", "-w", str(workspace)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def main() -> None:
    workspace = Path(tempfile.mkdtemp(prefix="forgetflow-bench-"))
    os.environ.setdefault("PREFECT_HOME", str(workspace / ".prefect-home"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        settings = _prepare(workspace)
        server = _start_prefect()
        one = _batch(settings, 1, 0)
        hundred = _batch(settings, 100, 10)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    demo = _demo_seconds()
    result = {"command": "python -m benchmarks.deletion_flow", "environment": describe(), "prefect_server_start_seconds": server, "one_request": one, "hundred_requests": hundred, "demo_seconds": demo}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deletion_flow.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "deletion_flow.md").write_text(render(result))
    print(render(result))


def render(r: dict) -> str:
    one, hundred = r["one_request"], r["hundred_requests"]
    ratio = hundred["total_seconds"] / one["total_seconds"]
    rows = [
        f"| embedded Prefect server start (once per process; a served deployment has it running) | {r['prefect_server_start_seconds']:.1f} s | | |",
        f"| one batch, 1 request ({one['samples']} samples): total | {one['total_seconds']:.1f} s | | |",
        f"| ... of which unlearning + reference + evaluation | {one['compute_seconds']:.1f} s | | |",
        f"| ... pipeline overhead (validation, DVC, MLflow, Prefect, erasure) | {one['overhead_seconds']:.1f} s | <= 10 s | {'yes' if one['overhead_seconds'] <= 10 else 'no'} |",
        f"| one batch, 100 requests ({hundred['samples']} samples): total | {hundred['total_seconds']:.1f} s ({ratio:.2f}x one request) | <= 2x | {'yes' if ratio <= 2 else 'no'} |",
        f"| ... pipeline overhead | {hundred['overhead_seconds']:.1f} s | | |",
        f"| `forgetflow demo` from a fresh workspace (bootstrap + batch) | {r['demo_seconds']:.1f} s | <= 120 s | {'yes' if r['demo_seconds'] <= 120 else 'no'} |",
    ]
    steps = " / ".join(f"{k} {v:.1f}" for k, v in one["steps"].items())
    return "\n".join(
        ["## Deletion flow: overhead, batching, demo", "", f"Command: `{r['command']}`  ", f"Machine: {markdown_line(r['environment'])}", "",
         "| measurement | value | target | met |", "|---|---|---|---|", *rows, "", f"Step wall times of the one-request batch (s): {steps}", ""]
    )


if __name__ == "__main__":
    main()
