"""`forgetflow calibrate` on the demo workspace, timed as a user runs it.

    python -m benchmarks.calibrate_demo [--runs 1]

A fresh workspace bootstrapped on the embedded digits dataset (what `forgetflow demo` starts from),
then `forgetflow calibrate` through the CLI, as a subprocess with its own embedded Prefect server,
wall-clock timed from start to exit. Target (issue "Unlearning that ships"): ≤ 10 minutes on the
2-core machine. Results: benchmarks/results/calibrate_demo.json, with the ladders it selected.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "calibrate_demo.json"
TARGET_SECONDS = 600.0
BIN = Path(sys.executable).parent


def _forgetflow(workspace: Path, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL",) and not k.startswith("FORGETFLOW_")}
    env.update(PREFECT_HOME=str(workspace / ".forgetflow" / "prefect"), TQDM_DISABLE="1")
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "forgetflow"), *args, "-w", str(workspace)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"forgetflow {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="ff-calibrate-") as tmp:
            workspace = Path(tmp) / "ws"
            bootstrap = _forgetflow(workspace, "bootstrap", "digits")
            seconds = _forgetflow(workspace, "calibrate")
            ladders = json.loads((workspace / ".forgetflow" / "calibration.json").read_text())["ladders"]
            runs.append({"bootstrap_seconds": bootstrap, "calibrate_seconds": seconds, "ladders": ladders})
            print(f"bootstrap {bootstrap:.0f} s, calibrate {seconds:.0f} s", flush=True)
    out = {"runs": runs, "target_seconds": TARGET_SECONDS, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "command": " ".join(["python -m benchmarks.calibrate_demo", *(sys.argv[1:] if argv is None else argv)]), "cpus": os.cpu_count()}
    OUT.write_text(json.dumps(out, indent=2))


def targets(results: Path) -> list[str]:
    path = results / "calibrate_demo.json"
    if not path.exists():
        return []
    out = json.loads(path.read_text())
    worst = max(r["calibrate_seconds"] for r in out["runs"])
    met = "**met**" if worst <= out["target_seconds"] else "**not met**"
    return [f"| `forgetflow calibrate` on the demo workspace ≤ {out['target_seconds'] / 60:g} min | {worst / 60:.1f} min (worst of {len(out['runs'])} run(s), {out['finished']}; `{out['command']}`) | {met} |"]


if __name__ == "__main__":
    main()
