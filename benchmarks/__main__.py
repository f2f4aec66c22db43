"""The benchmark suite: `python -m benchmarks list | run [SCENARIO ...] | render`.

    python -m benchmarks list
    python -m benchmarks run                      # every scenario, full size (results in benchmarks/results/)
    python -m benchmarks run --quick              # every scenario, small (<= 10 min on 2 cores; benchmarks/results/quick/)
    python -m benchmarks run methods scaling --seeds 5 --device auto --jobs 2
    python -m benchmarks run methods:fashion-mnist:budget   # one unit of a scenario
    python -m benchmarks render                   # BENCHMARKS.md from benchmarks/results/

The device comes from --device, else the FORGETFLOW_DEVICE setting, else auto (CUDA when present).
A CUDA run writes to benchmarks/results/gpu/, which fills BENCHMARKS.md's "GPU figures" section.
Ctrl-C (or SIGTERM) interrupts every running unit once and waits for it, so the servers a unit
started (the service unit's `forgetflow serve`) stop with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _list() -> int:
    from benchmarks.suite import SCENARIOS, unit_available

    for scenario in SCENARIOS.values():
        missing = [u.module for u in scenario.units if not unit_available(u)]
        note = f"  (not available: {', '.join(missing)} does not exist yet)" if missing else ""
        print(f"{scenario.name:14s} {scenario.summary}{note}")
        if len(scenario.units) > 1:
            print(f"{'':14s} units: {', '.join(u.name for u in scenario.units)}")
    return 0


def _exit_on_sigterm(signum, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so run_units stops its units on the way out


def _run(args) -> int:
    import signal

    from benchmarks import render
    from benchmarks.environment import record
    from benchmarks.suite import SCENARIOS, default_out, plan_units, run_units, units_by_name, write_suite
    from forgetflow.device import resolve_device

    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS and n not in units_by_name()]
    if unknown:
        from forgetflow.errors import ConfigError

        raise ConfigError(f"unknown benchmark scenario(s) or unit(s): {', '.join(unknown)}", f"choose a scenario from {', '.join(SCENARIOS)} or a unit from {', '.join(units_by_name())} (`python -m benchmarks list`)")
    device = resolve_device(args.device or os.environ.get("FORGETFLOW_DEVICE", "auto"))
    out = Path(args.out) if args.out else default_out(args.quick, device)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    command = "python -m benchmarks " + " ".join(sys.argv[1:])

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S', time.gmtime())} {(time.perf_counter() - started) / 60:5.1f} min] {message}", flush=True)

    mode = "QUICK mode (fewer seeds, smaller subsets and grids, N = 4 challenge models)" if args.quick else "full mode"
    log(f"{mode}; device {device}; scenarios {', '.join(names)}; results in {out}")
    if args.deadline:
        import calendar

        hours, minutes = (int(x) for x in args.deadline.split(":"))
        now = time.gmtime()
        deadline = calendar.timegm((now.tm_year, now.tm_mon, now.tm_mday, hours, minutes, 0, 0, 0, 0))
        deadline += 86400 if deadline < time.time() else 0
        os.environ["FORGETFLOW_BENCH_DEADLINE"] = str(deadline)
        log(f"deadline {args.deadline} UTC for the methods scenario's seeds")
    units = plan_units(names, quick=args.quick)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    report = run_units(units, quick=args.quick, device=device, out=out, seeds=args.seeds, jobs=args.jobs, log=log)
    total = time.perf_counter() - started
    suite = {
        "environment": record(device=device, quick=args.quick, seeds=args.seeds, command=command),
        "scenarios": names, "partial": names != list(SCENARIOS), "jobs": args.jobs, "deadline_utc": args.deadline,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() - total)), "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "total_seconds": total, "units": report,
    }
    write_suite(out, suite)
    render.main(["--results", str(out)])
    failed = [n for n, r in report.items() if r.get("rc") not in (0, None)]
    log(f"finished in {total / 60:.1f} min{'; FAILED: ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the named scenarios")
    run = sub.add_parser("run", help="run scenarios (default: all)")
    run.add_argument("scenarios", nargs="*")
    run.add_argument("--quick", action="store_true", help="the whole suite in <= 10 minutes on 2 CPU cores: fewer seeds, smaller subsets and grids")
    run.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None, help="default: FORGETFLOW_DEVICE, else auto")
    run.add_argument("--seeds", type=int, default=None, help="evaluation seeds of the methods scenario (default 5, quick 1)")
    run.add_argument("--jobs", type=int, default=2, help="units run side by side (one torch thread each); timing-sensitive units run alone")
    run.add_argument("--out", default=None, help="results folder (default benchmarks/results[/gpu][/quick])")
    run.add_argument("--deadline", default=None, help="HH:MM UTC: the methods scenario starts no seed it expects to end after it (cuts are recorded and shown)")
    rend = sub.add_parser("render", help="rebuild BENCHMARKS.md from the results")
    rend.add_argument("--results", default=None)
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "render":
        from benchmarks import render

        return render.main(["--results", args.results] if args.results else [])
    from forgetflow.errors import ForgetflowError

    try:
        return _run(args)
    except ForgetflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
