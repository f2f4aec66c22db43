"""Foundation timings: `forgetflow --help`, and the bootstrap on digits from a fresh workspace
(the first half of the demo: import + DVC, train, evaluate, MLflow registration, Prefect flow).
The whole demo, with its deletion batch, is timed by `benchmarks.deletion_flow`.

    python -m benchmarks run foundation [--quick]      # through the suite
    python -m benchmarks.foundation [--runs 3] [--quick] [--out DIR]

Targets on a 2-core CPU: help <= 1 s, bootstrap <= 60 s wall. Results go to
benchmarks/results/foundation.{json,md}; `python -m benchmarks.render` rebuilds BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.environment import describe, markdown_line

RESULTS = Path(__file__).parent / "results"
FORGETFLOW = [str(Path(sys.executable).parent / "forgetflow")]


def timed(command: list[str], env_extra: dict | None = None) -> float:
    env = {**os.environ, **(env_extra or {})}
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of each measurement")
    parser.add_argument("--device", default=None, help="accepted for the suite runner (CPU-only measurements)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1

    help_times = [timed(FORGETFLOW + ["--help"]) for _ in range(max(5, args.runs))]
    demo_times = []
    for _ in range(args.runs):
        workspace = Path(tempfile.mkdtemp(prefix="forgetflow-bench-"))
        try:
            # A fresh workspace and a fresh Prefect home: the cold path a newcomer sees.
            demo_times.append(timed(FORGETFLOW + ["bootstrap", "digits", "--workspace", str(workspace)]))
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
    result = {
        "command": "python -m benchmarks.foundation --runs %d" % args.runs,
        "environment": describe(), "quick": args.quick,
        "help_seconds": help_times,
        "demo_seconds": demo_times,
        "help_median": statistics.median(help_times),
        "demo_median": statistics.median(demo_times),
        "targets": {"help_seconds": 1.0, "demo_seconds": 60.0},
    }
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "foundation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "foundation.md").write_text(render(result))
    print(render(result))


def render(result: dict) -> str:
    help_ok = result["help_median"] <= result["targets"]["help_seconds"]
    demo_ok = result["demo_median"] <= result["targets"]["demo_seconds"]
    return "\n".join(
        [
            "## Foundation: CLI start-up and the demo",
            "",
            f"Command: `{result['command']}`  ",
            f"Machine: {markdown_line(result['environment'])}",
            "",
            "| measurement | runs (s) | median (s) | target | met |",
            "|---|---|---|---|---|",
            f"| `forgetflow --help` | {', '.join(f'{t:.2f}' for t in result['help_seconds'])} | {result['help_median']:.2f} | <= 1 s | {'yes' if help_ok else 'no'} |",
            f"| `forgetflow bootstrap digits` (fresh workspace and Prefect home: import + DVC, train, evaluate, MLflow register) | {', '.join(f'{t:.1f}' for t in result['demo_seconds'])} | {result['demo_median']:.1f} | <= 60 s | {'yes' if demo_ok else 'no'} |",
            "",
        ]
    )


if __name__ == "__main__":
    main()
