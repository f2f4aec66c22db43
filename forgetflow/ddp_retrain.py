"""The reference retrain on several processes (DistributedDataParallel): both ends of the torchrun command.

Parent side, `launch_ddp_retrain`: runs

    python -m torch.distributed.run --standalone --nproc-per-node N -m forgetflow.ddp_retrain \\
        --data DATA --params PARAMS --seed S --output CHECKPOINT

and turns a failure into a forgetflow error that names the failing rank and its error.
Child side, `main` (what torchrun starts, once per rank): loads the splits, trains with the recipe
of PARAMS (`model` and `train` sections), and rank 0 writes CHECKPOINT plus CHECKPOINT.json (history,
wall time, world size, backend). DATA is a dataset version folder (`data/<name>`, its train and val
splits) or a `.npz` written by `write_splits` (the exact splits a caller holds in memory).
On several machines, run the same module under your own `torchrun --nnodes ... --rdzv-endpoint ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections import deque
from pathlib import Path


def report_path(output: Path) -> Path:
    return Path(output).with_name(Path(output).name + ".json")


def error_path(output: Path, rank: int) -> Path:
    return Path(output).with_name(f"{Path(output).name}.rank{rank}.error.json")


def write_splits(path: Path, train, val, spec) -> Path:
    """The splits and model spec a caller holds, for `--data` (uncompressed: written once, read once)."""
    import numpy as np

    arrays = {"spec": np.array(json.dumps(spec.as_dict()))}
    for name, split in (("train", train), ("val", val)):
        if split is not None:
            arrays.update({f"{name}_images": split.images, f"{name}_labels": split.labels, f"{name}_sample_ids": split.sample_ids})
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return Path(path)


def read_inputs(data: Path, params):
    """(train, val, spec) from a dataset version folder or a `write_splits` file."""
    import numpy as np

    from forgetflow.data.store import DatasetVersion, LoadedSplit
    from forgetflow.errors import WorkspaceError
    from forgetflow.models import ModelSpec
    from forgetflow.training import model_spec_for

    data = Path(data)
    if data.is_dir():
        version = DatasetVersion(data)
        return version.load("train"), version.load("val"), model_spec_for(params.model, version.meta)
    if not data.is_file():
        raise WorkspaceError(f"no dataset at {data}", "pass a dataset version folder (data/<name>) or a splits file written by write_splits")
    with np.load(data, allow_pickle=False) as arrays:
        split = lambda name: LoadedSplit(arrays[f"{name}_images"], arrays[f"{name}_labels"], arrays[f"{name}_sample_ids"]) if f"{name}_images" in arrays else None  # noqa: E731
        return split("train"), split("val"), ModelSpec(**json.loads(str(arrays["spec"])))


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m forgetflow.ddp_retrain", description="Retrain with the recipe on several processes (DDP); start it with torchrun.")
    parser.add_argument("--data", type=Path, required=True, help="dataset version folder (data/<name>) or a splits .npz")
    parser.add_argument("--params", type=Path, required=True, help="params file (YAML or JSON) with the model and train sections")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True, help="checkpoint path; the report goes to <output>.json")
    parser.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu (each rank uses cuda:<local rank>)")
    parser.add_argument("--expect-train-ids", metavar="SHA256", help="refuse to train unless the train split's sample IDs have this digest")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return parser


def run(args: argparse.Namespace) -> None:
    from forgetflow.device import resolve_device
    from forgetflow.distributed import distributed_env, process_group, rank_device, resolve_backend, save_checkpoint_atomic, train_distributed
    from forgetflow.evaluation.reference import sample_ids_digest
    from forgetflow.params import load_params

    started = time.perf_counter()
    env = distributed_env()
    if not args.params.is_file():
        from forgetflow.errors import ConfigError

        raise ConfigError(f"params file {args.params} does not exist", "pass the workspace's params.yaml")
    params = load_params(args.params)
    train, val, spec = read_inputs(args.data, params)
    train_ids = sample_ids_digest(train)
    if args.expect_train_ids and train_ids != args.expect_train_ids:
        from forgetflow.errors import DataIntegrityError

        raise DataIntegrityError(f"the train split in {args.data} holds other samples than expected", "pass the dataset version folder the caller's splits were loaded from")
    device = rank_device(resolve_device(args.device), env.local_rank)
    backend = resolve_backend(args.backend, device)
    with process_group(backend, device, env):
        result = train_distributed(spec, params.train, train, val, env=env, device=device, seed=args.seed, progress=not args.quiet)
        if env.is_main:
            info = {
                "world_size": env.world_size,
                "backend": backend,
                "device": device,
                "seed": args.seed,
                "n_train": int(len(train.labels)),
                "train_ids_sha256": train_ids,
                "train_seconds": result.seconds,
            }
            save_checkpoint_atomic(result.model, args.output, extra={"role": "ddp-retrain", **info})
            _write_json_atomic(report_path(args.output), {**info, "history": result.history, "wall_seconds": time.perf_counter() - started})
        import torch.distributed as dist

        dist.barrier()  # no rank leaves (and tears the group down) before rank 0 has written


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except BaseException as exc:
        # What the parent names in its error: torchrun itself only reports an exit status.
        rank = int(os.environ.get("RANK", "0"))
        record = {"rank": rank, "type": type(exc).__name__, "message": getattr(exc, "message", str(exc)), "hint": getattr(exc, "hint", None), "traceback": traceback.format_exc()}
        try:
            _write_json_atomic(error_path(args.output, rank), record)
        except OSError:
            pass  # the output folder itself may be the problem; the traceback still reaches stderr
        raise
    return 0


# Parent side ------------------------------------------------------------------------------------


def launch_ddp_retrain(*, data: Path, params_file: Path, seed: int, output: Path, nproc_per_node: int, backend: str = "auto", device: str = "cpu", progress: bool = True, expect_train_ids: str | None = None) -> dict:
    """Run the DDP retrain under torchrun (standalone, this machine); return rank 0's report.

    Child output is relayed to stderr when `progress`, else kept; on failure the error names the
    failing rank and its error (from the rank's error file), or shows the end of the output.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    for stale in output.parent.glob(f"{output.name}.rank*.error.json"):
        stale.unlink()
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc_per_node),
        "-m", "forgetflow.ddp_retrain",
        "--data", str(data), "--params", str(params_file), "--seed", str(seed), "--output", str(output),
        "--backend", backend, "--device", device,
    ] + ([] if progress else ["--quiet"]) + (["--expect-train-ids", expect_train_ids] if expect_train_ids else [])  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}  # N ranks share the cores
    tail: deque[str] = deque(maxlen=40)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
        for line in process.stdout:
            tail.append(line)
            if progress:
                sys.stderr.write(line)
        status = process.wait()
    if status != 0 or not report_path(output).is_file():
        raise _launch_error(output, nproc_per_node, status, list(tail))
    return json.loads(report_path(output).read_text())


def _launch_error(output: Path, nproc: int, status: int, tail: list[str]):
    from forgetflow import errors

    # The earliest error is the cause; the ranks that fail after it mostly report a broken connection.
    files = sorted(output.parent.glob(f"{output.name}.rank*.error.json"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    records = [json.loads(p.read_text()) for p in files]
    if not records:
        last = "".join(tail[-15:]).rstrip() or "(no output)"
        return errors.ForgetflowError(f"DDP retrain (torchrun, {nproc} processes) exited with status {status} and no rank reported an error; last output:\n{last}", "run the torchrun command by hand to see every rank's output")
    first = records[0]
    cls = getattr(errors, first["type"], None)
    known = isinstance(cls, type) and issubclass(cls, errors.ForgetflowError)
    detail = first["message"] if known else f"{first['type']}: {first['message']}"
    others = f" (ranks {', '.join(str(r['rank']) for r in sorted(records, key=lambda r: r['rank']))} failed)" if len(records) > 1 else ""
    ending = "\n".join(first["traceback"].strip().splitlines()[-6:])
    hint = first["hint"] or f"rank {first['rank']}'s traceback ends with:\n{ending}"
    return (cls if known else errors.ForgetflowError)(f"DDP retrain failed on rank {first['rank']} of {nproc}{others}: {detail}", hint)


if __name__ == "__main__":
    sys.exit(main())
