"""The named scenarios of the benchmark suite and the scheduler that runs them.

A scenario is one or more units; a unit is one `python -m <module> ...` worker process with its own
log, so units can run side by side (`--jobs`, one torch thread each) and a failing unit does not
take the others down. Timing-sensitive units (CLI start-up, the Prefect flow, the service) run
alone, first. `suite.json` in the output folder records the environment, the command line and
every unit's wall time and exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Unit:
    name: str
    module: str
    args: tuple = ()
    exclusive: bool = False  # measures wall time of a whole pipeline: run alone
    after: tuple = ()  # units whose results it reads, when they are part of the same run
    takes_seeds: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    units: tuple = field(default_factory=tuple)


def _methods_unit(dataset: str, group: str) -> Unit:
    return Unit(f"methods:{dataset}:{group}", "benchmarks.methods", ("--dataset", dataset, "--group", group), takes_seeds=True)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("foundation", "`forgetflow --help` start-up and the digits bootstrap from a fresh workspace", (Unit("foundation", "benchmarks.foundation", exclusive=True),)),
        Scenario("requests", "request resolution + validation of 10,000 IDs at Fashion-MNIST size; ledger append/verify", (Unit("requests", "benchmarks.requests_validation", exclusive=True),)),
        Scenario("methods", "every method vs the retrain on digits and Fashion-MNIST: random 10 %, @ 10 % time, subjects, class, misclassify 16/64/128, continual",
                 tuple(_methods_unit(d, g) for d in ("fashion-mnist", "digits") for g in ("budget", "core", "other"))),
        Scenario("evaluation", "NeurIPS 2023 challenge forget score of every method on digits (N = 32 per side)", (Unit("evaluation", "benchmarks.challenge", after=("methods:digits:core",)),)),
        Scenario("scaling", "cost vs forget-set size and training-set size (Fashion-MNIST), peak memory", (Unit("scaling", "benchmarks.scaling"),)),
        Scenario("deletion-flow", "Prefect deletion flow on digits: pipeline overhead, 1/10/100 requests per batch, the demo", (Unit("deletion-flow", "benchmarks.deletion_flow", exclusive=True),)),
        Scenario("service", "`forgetflow serve`: urgent-request latency to a new champion, intake throughput", (Unit("service", "benchmarks.service", exclusive=True),)),
    )
}


def default_out(quick: bool, device: str) -> Path:
    base = RESULTS / "gpu" if device.startswith("cuda") else RESULTS
    return base / "quick" if quick else base


def unit_available(unit: Unit) -> bool:
    return (ROOT / (unit.module.replace(".", "/") + ".py")).exists()


def unit_command(unit: Unit, *, quick: bool, device: str, out: Path, seeds: int | None) -> list[str]:
    command = [sys.executable, "-m", unit.module, *unit.args]
    source = (ROOT / (unit.module.replace(".", "/") + ".py")).read_text()
    if unit.name == "service":  # written separately (issue 8): pass only the options it declares
        known = lambda option: f'"{option}"' in source  # noqa: E731
        return command + (["--out", str(out)] if known("--out") else []) + (["--device", device] if known("--device") else []) + (["--quick"] if quick and known("--quick") else [])
    command += ["--out", str(out), "--device", device]
    if quick:
        command.append("--quick")
    if seeds and unit.takes_seeds:
        command += ["--seeds", str(seeds)]
    return command


# Start order of the side-by-side units: the longest first, and each dataset's core scenarios
# before the rest, so a run cut short still has the headline tables.
PRIORITY = ("methods:fashion-mnist:budget", "methods:fashion-mnist:core", "methods:fashion-mnist:other", "methods:digits:budget", "methods:digits:core", "evaluation", "scaling", "methods:digits:other")
# Quick mode shrinks the units unevenly: digits' other scenarios are a tenth of the full run's
# longest unit but the second longest in quick mode, and started last they ran alone for
# 1.8 min of a 10.2-min run (2026-12-03). Started after digits' core tables, the two lanes end
# within a few seconds of each other.
PRIORITY_QUICK = ("methods:fashion-mnist:budget", "methods:fashion-mnist:core", "methods:fashion-mnist:other", "methods:digits:budget", "methods:digits:core", "methods:digits:other", "evaluation", "scaling")


def units_by_name() -> dict[str, Unit]:
    return {unit.name: unit for scenario in SCENARIOS.values() for unit in scenario.units}


def plan_units(names: list[str], quick: bool = False) -> list[Unit]:
    """The units of the named scenarios, or single units named like `methods:fashion-mnist:budget`,
    in the mode's start order."""
    units: list[Unit] = []
    single = units_by_name()
    for name in names:
        for unit in SCENARIOS[name].units if name in SCENARIOS else (single[name],):
            if unit not in units:
                units.append(unit)
    order = PRIORITY_QUICK if quick else PRIORITY
    return sorted(units, key=lambda u: order.index(u.name) if u.name in order else -1)


def run_units(units: list[Unit], *, quick: bool, device: str, out: Path, seeds: int | None, jobs: int, log) -> dict:
    """Exclusive units one at a time first, then the rest `jobs` at a time in list order, each as
    soon as the units it reads (`after`) have finished. Returns {unit: {rc, seconds, log, ...}}."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FORGETFLOW_DEVICE": device, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    report: dict[str, dict] = {}
    names = {u.name for u in units}
    pending = [u for u in units if u.exclusive] + [u for u in units if not u.exclusive]
    running: dict[str, tuple[subprocess.Popen, float, Unit]] = {}
    try:
        while pending or running:
            for name, (proc, started, unit) in list(running.items()):
                if proc.poll() is not None:
                    report[name] = {"rc": proc.returncode, "seconds": time.perf_counter() - started, "log": str((logs / f"{name.replace(':', '_')}.log").relative_to(ROOT)) if out.is_relative_to(ROOT) else str(logs / f"{name.replace(':', '_')}.log")}
                    log(f"{name}: {'done' if proc.returncode == 0 else f'FAILED (exit {proc.returncode})'} in {report[name]['seconds'] / 60:.1f} min")
                    del running[name]
            exclusive_busy = any(u.exclusive for _, _, u in running.values())
            for unit in list(pending):
                if exclusive_busy or len(running) >= (1 if unit.exclusive else jobs):
                    break
                if unit.exclusive and running:
                    break
                if any(dep in names and dep not in report for dep in unit.after):
                    continue
                pending.remove(unit)
                if not unit_available(unit):
                    report[unit.name] = {"rc": None, "seconds": 0.0, "skipped": f"{unit.module} does not exist yet"}
                    log(f"{unit.name}: skipped ({unit.module} does not exist yet)")
                    continue
                command = unit_command(unit, quick=quick, device=device, out=out, seeds=seeds)
                handle = open(logs / f"{unit.name.replace(':', '_')}.log", "w")  # noqa: SIM115 -- closed with the process
                handle.write("$ " + " ".join(command[1:]) + "\n")
                handle.flush()
                log(f"{unit.name}: started ({' '.join(command[2:])})")
                # its own session: a Ctrl-C reaches the runner alone, which passes on exactly one interrupt
                running[unit.name] = (subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True), time.perf_counter(), unit)
                if unit.exclusive:
                    break
            time.sleep(0.5)
    finally:  # interrupted (Ctrl-C, SIGTERM, an error): no unit, nor a server a unit started, outlives the suite
        stop_units({name: proc for name, (proc, _, _) in running.items()}, log)
    return report


def stop_units(running: dict[str, subprocess.Popen], log, grace_s: float = 60.0) -> None:
    """Interrupt each unit still running (SIGINT: its `finally` blocks stop the servers it started),
    then kill whatever has not ended within `grace_s`."""
    for name, proc in running.items():
        if proc.poll() is None:
            log(f"{name}: interrupted")
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for proc in running.values():
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def write_suite(out: Path, record: dict) -> Path:
    """suite.json: the last whole-suite run, and after it every partial re-run since.

    A partial run (some scenarios or units) never replaces the whole run's record, whose wall time
    is the figure the suite's time target is read from; it is appended to `partial_runs`, and a
    new whole run starts the list afresh."""
    path = out / "suite.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    if not record.get("partial"):
        document = {**record, "partial_runs": []}
    elif previous:
        document = {**previous, "partial_runs": [*previous.get("partial_runs", []), record]}
    else:  # no whole run yet: the partial run stands alone, marked partial
        document = {**record, "partial_runs": [record]}
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path
