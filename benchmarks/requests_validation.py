"""Request validation and ledger timings at Fashion-MNIST size.

    python -m benchmarks run requests [--quick]        # through the suite
    python -m benchmarks.requests_validation [--runs 3] [--quick] [--out DIR]

1. Great Expectations import (first import in this process) and ephemeral-context set-up, reported
   on their own: they are paid once per process, not per request.
2. Resolve + validate one request of 10,000 train sample IDs against the 70,000-sample
   Fashion-MNIST manifest (imported from /usr/share/datasets/fashion-mnist into a temporary
   workspace): resolution, frames (reads and hashes every forget-set image from its shard), all
   GX suites, the markdown report and the ledger entry. Target <= 5 s.
3. 10,000 `Ledger.append` calls, each locked and fsynced on its own. Target >= 1,000 entries/s.
   The disk's write+fsync latency is measured just before and reported next to it (it bounds any
   durable per-entry append), and so is `append_many` in groups of 100 (one fsync per group).
4. `Ledger.verify()` of 100,000 entries. Target <= 2 s.

Results go to benchmarks/results/requests_validation.{json,md}; `python -m benchmarks.render`
rebuilds BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.environment import describe, markdown_line

RESULTS = Path(__file__).parent / "results"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
TARGETS = {"validate_seconds": 5.0, "append_entries_per_second": 1000.0, "verify_seconds": 2.0}


def bench_validation(workspace: Path, runs: int) -> dict:
    from forgetflow.data.importer import import_dataset
    from forgetflow.requests.intake import submit
    from forgetflow.requests.resolution import RecordedRequest, resolve
    from forgetflow.requests.intake import open_ledger
    from forgetflow.settings import load_settings
    from forgetflow.validation import suites
    from forgetflow.validation.validate import current_dataset, validate_request
    from forgetflow.workspace import init_workspace

    settings = load_settings(workspace)
    started = time.perf_counter()
    info = import_dataset(settings, init_workspace(settings), "fashion-mnist", str(FASHION_MNIST))
    import_seconds = time.perf_counter() - started
    version = current_dataset(settings)
    train = version.manifest.loc[version.manifest["split"] == "train", "sample_id"].to_numpy()
    ids = np.random.default_rng(0).choice(train, size=10_000, replace=False)
    submit(settings, {"request_id": "bench-10k", "kind": "samples", "ids": ids.tolist(), "reason": "benchmark", "requested_by": "benchmarks"})

    started = time.perf_counter()
    suites.import_gx()
    gx_import = time.perf_counter() - started
    started = time.perf_counter()
    context = suites.ephemeral_context()
    context_seconds = time.perf_counter() - started

    request = RecordedRequest.from_status(open_ledger(settings).status("bench-10k"))
    started = time.perf_counter()
    forget = resolve(request, version)
    resolve_seconds = time.perf_counter() - started

    times, outcome = [], None
    for _ in range(runs):  # a validated request may be validated again; each run appends one entry
        started = time.perf_counter()
        outcome = validate_request(settings, "bench-10k", version=version, context=context)
        times.append(time.perf_counter() - started)
        assert outcome.success, outcome.failed_rules
    return {
        "dataset": {"name": info.name, "n_samples": info.n_samples, "splits": info.splits},
        "import_dataset_seconds": import_seconds,
        "forget_set": forget.summary(),
        "expectations": len(outcome.results),
        "gx_import_seconds": gx_import,
        "gx_context_seconds": context_seconds,
        "resolve_seconds": resolve_seconds,
        "validate_seconds": times,
        "validate_median": statistics.median(times),
    }


def _entry_fields(i: int) -> dict:
    """A realistic small entry: a 'received' request of five samples."""
    return {"kind": "samples", "goal": "forget", "targets": [i, i + 1, i + 2, i + 3, i + 4], "n_targets": 5, "reason": "GDPR Art. 17 request", "requested_by": "dpo", "fingerprint": f"{i:064x}"}


def bench_ledger(folder: Path, runs: int) -> dict:
    from datetime import datetime, timezone

    from forgetflow.requests.ledger import Ledger, encode_entry

    fsync_ms = _fsync_latency_ms(folder)
    ledger = Ledger(folder / "ledger.jsonl")
    started = time.perf_counter()
    for i in range(10_000):
        ledger.append("received", f"req-{i}", **_entry_fields(i))
    append_seconds = time.perf_counter() - started

    memory_rate = None
    if Path("/dev/shm").is_dir():  # tmpfs: fsync is a no-op, so this is the append path's own CPU cost
        shm = Path(tempfile.mkdtemp(prefix="forgetflow-bench-", dir="/dev/shm"))
        try:
            in_memory = Ledger(shm / "ledger.jsonl")
            started = time.perf_counter()
            for i in range(10_000):
                in_memory.append("received", f"req-{i}", **_entry_fields(i))
            memory_rate = 10_000 / (time.perf_counter() - started)
        finally:
            shutil.rmtree(shm, ignore_errors=True)

    grouped = Ledger(folder / "grouped.jsonl")
    started = time.perf_counter()
    for start in range(0, 10_000, 100):
        grouped.append_many([("received", f"req-{i}", _entry_fields(i)) for i in range(start, start + 100)])
    grouped_seconds = time.perf_counter() - started
    assert grouped.verify().ok and grouped.verify().n_entries == 10_000

    # Grow the chain to 100,000 entries directly in the ledger format (appending them one by one
    # would only repeat step 3), then let repair_head() check it and anchor the head.
    last = ledger.entries()[-1]
    prev, lines = last["hash"], []
    at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    for seq in range(10_000, 100_000):
        line, prev = encode_entry({"seq": seq, "at": at, "event": "received", "request_id": f"req-{seq}", "prev": prev, **_entry_fields(seq)})
        lines.append(line)
    with open(ledger.path, "ab") as handle:
        handle.write(b"".join(lines))
    assert ledger.repair_head().ok

    verify_times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = ledger.verify()
        verify_times.append(time.perf_counter() - started)
        assert result.ok and result.n_entries == 100_000
    return {
        "append_entries": 10_000,
        "append_seconds": append_seconds,
        "append_entries_per_second": 10_000 / append_seconds,
        "fsync_latency_ms": fsync_ms,
        "append_tmpfs_entries_per_second": memory_rate,
        "append_many_group": 100,
        "append_many_seconds": grouped_seconds,
        "append_many_entries_per_second": 10_000 / grouped_seconds,
        "verify_entries": 100_000,
        "ledger_bytes": ledger.path.stat().st_size,
        "verify_seconds": verify_times,
        "verify_median": statistics.median(verify_times),
    }


def _fsync_latency_ms(folder: Path, n: int = 200) -> float:
    """Median time of one small write + fsync on this disk right now: the floor of a durable append."""
    import os

    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        for _ in range(n):
            started = time.perf_counter()
            os.write(fd, b"x" * 300 + b"\n")
            os.fsync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of each measurement")
    parser.add_argument("--device", default=None, help="accepted for the suite runner (CPU-only measurements)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1
    root = Path(tempfile.mkdtemp(prefix="forgetflow-bench-requests-"))
    try:
        validation = bench_validation(root / "workspace", args.runs)
        ledger = bench_ledger(root, args.runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"command": f"python -m benchmarks.requests_validation --runs {args.runs}", "environment": describe(), "quick": args.quick, "validation": validation, "ledger": ledger, "targets": TARGETS}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "requests_validation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "requests_validation.md").write_text(render(result))
    print(render(result))


def render(result: dict) -> str:
    v, l, t = result["validation"], result["ledger"], result["targets"]

    def met(ok: bool) -> str:
        return "yes" if ok else "no"

    return "\n".join(
        [
            "## Requests: forget-set validation and the ledger",
            "",
            f"Command: `{result['command']}`  ",
            f"Machine: {markdown_line(result['environment'])}; great-expectations {result['environment']['versions'].get('great-expectations')}",
            "",
            f"Dataset: Fashion-MNIST imported from {FASHION_MNIST} ({v['dataset']['n_samples']:,} samples: {v['dataset']['splits']}). "
            f"Forget set: 10,000 random train IDs ({v['expectations']} expectations over the request, forget set, safety limits and the 70,000-row manifest).",
            "",
            "| measurement | runs | median | target | met |",
            "|---|---|---|---|---|",
            f"| resolve + validate 10,000 IDs (frames, GX suites, report, ledger entry) | {', '.join(f'{s:.2f}' for s in v['validate_seconds'])} s | {v['validate_median']:.2f} s | <= {t['validate_seconds']:.0f} s | {met(v['validate_median'] <= t['validate_seconds'])} |",
            f"| of which resolution alone | {v['resolve_seconds']:.3f} s | | | |",
            f"| Great Expectations import (once per process, excluded above) | {v['gx_import_seconds']:.2f} s | | | |",
            f"| GX ephemeral context set-up (once per process, excluded above) | {v['gx_context_seconds']:.2f} s | | | |",
            f"| `Ledger.append`, 10,000 entries (each locked and fsynced) | {l['append_seconds']:.2f} s | {l['append_entries_per_second']:,.0f} entries/s | >= {t['append_entries_per_second']:,.0f} entries/s | {met(l['append_entries_per_second'] >= t['append_entries_per_second'])} |",
            f"| the disk's write+fsync latency just before (bounds any per-entry durable append) | {l['fsync_latency_ms']:.2f} ms | max {1000 / l['fsync_latency_ms']:,.0f} fsyncs/s | | |",
            f"| `Ledger.append`, 10,000 entries on tmpfs (/dev/shm: fsync costs nothing; the code's own cost) | | {l['append_tmpfs_entries_per_second'] or 0:,.0f} entries/s | | |",
            f"| `Ledger.append_many`, 10,000 entries in groups of {l['append_many_group']} (one fsync per group) | {l['append_many_seconds']:.2f} s | {l['append_many_entries_per_second']:,.0f} entries/s | | |",
            f"| `Ledger.verify()`, 100,000 entries ({l['ledger_bytes'] / 2**20:.1f} MiB) | {', '.join(f'{s:.2f}' for s in l['verify_seconds'])} s | {l['verify_median']:.2f} s | <= {t['verify_seconds']:.0f} s | {met(l['verify_median'] <= t['verify_seconds'])} |",
            "",
            f"Each `Ledger.append` is durable when it returns (one fsync), so on this disk its rate cannot exceed 1000 / {l['fsync_latency_ms']:.2f} ms = "
            f"{1000 / l['fsync_latency_ms']:,.0f} entries/s, whatever the code does; the tmpfs row is the code's own cost. Where entries move together "
            "(a batch of requests), `append_many` commits them with one fsync.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
