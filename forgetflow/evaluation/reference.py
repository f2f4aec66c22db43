"""The retrained-from-scratch reference: the project's training recipe on the retained data.

Cached under `<workspace>/.forgetflow/references/<data md5>-<recipe hash>-s<seed>/` so that one
(data version, recipe, seed) is never trained twice: a file lock serialises concurrent callers,
and the checkpoint and its meta.json are written atomically (meta.json last; a reference exists
only once its meta.json does). The training wall time is stored, so a cache hit still reports the
retrain cost that speed-up is measured against.

With `evaluation.reference.nproc_per_node` > 1 the retrain runs under torchrun as
DistributedDataParallel (`forgetflow.ddp_retrain`), one process per GPU (gloo processes on a CPU);
the result is cached under the same key, and meta.json records the world size and backend.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from forgetflow.data.store import LoadedSplit, sha256_bytes
from forgetflow.errors import DataIntegrityError
from forgetflow.evaluation.config import ReferenceParams

REFERENCE_FORMAT = "forgetflow.reference/1"


@dataclass
class Reference:
    model: object  # ImageClassifier in eval mode
    checkpoint: Path
    key: str
    seed: int
    seconds: float  # wall time of the retrain (stored: a cache hit reports the original cost)
    cache_hit: bool
    meta: dict = field(default_factory=dict)


def reference_due(policy: ReferenceParams, batch_number: int | None = None, *, urgent: bool = False, forced: str = "") -> tuple[bool, str]:
    """Whether this batch gets a reference, and why (the reason goes into the gate decision).

    `every_n_batches`: batches are numbered from 1; batches N, 2N, ... get one. `schedule`: no batch
    retrains; `forgetflow verify` runs on the policy's cron. A batch holding an urgent request
    (`urgent`) takes the fast path under any policy but `never`. `forced` (why a verification cannot
    wait, e.g. a quarantine deadline) makes any policy but `never` train one. A batch without a
    reference is gated by the reference-free checks; under every policy but `never` its champion is
    provisional until the next reference verifies it (a reference trained for an earlier data
    version still holds the samples deleted since, so it is no stand-in).
    """
    if policy.policy == "never":
        return False, "reference policy `never`: reference checks skipped"
    if forced:
        return True, f"reference forced: {forced}"
    if urgent and policy.urgent_fast_path:
        return False, "urgent request: fast path, verified by the next reference"
    if policy.policy == "always":
        return True, "reference policy `always`"
    if policy.policy == "schedule":
        return False, f"reference policy `schedule: {policy.schedule}`: fast path, verified by the scheduled `forgetflow verify`"
    if batch_number is None:
        return True, f"reference policy `every_n_batches: {policy.every_n_batches}` with no batch number: reference trained"
    due = batch_number % policy.every_n_batches == 0
    state = "due" if due else "not due: fast path, verified by the next reference"
    return due, f"reference policy `every_n_batches: {policy.every_n_batches}`, batch {batch_number} {state}"


SCHEDULE_CRONS = {"nightly": "0 3 * * *", "weekly": "0 3 * * 0", "hourly": "0 * * * *"}


def verification_cron(policy: ReferenceParams) -> str:
    """The cron of the served `forgetflow verify` deployment: the policy's schedule under
    `schedule`; otherwise hourly, to catch quarantine deadlines between batches."""
    if policy.policy == "schedule":
        return SCHEDULE_CRONS.get(policy.schedule, policy.schedule)
    return SCHEDULE_CRONS["hourly"]


def reference_key(data_md5: str, recipe_hash: str, seed: int) -> str:
    return f"{data_md5}-{recipe_hash}-s{seed}"


def references_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "references"


def sample_ids_digest(split: LoadedSplit) -> str:
    """Which samples a reference was trained on (never the IDs themselves: they may be erased)."""
    import numpy as np

    return sha256_bytes(np.sort(split.sample_ids).astype("<i8").tobytes())


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by the OS if the process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def load_cached_reference(state_dir: Path, data_md5: str, recipe_hash: str, seed: int) -> Reference | None:
    """The cached reference for this key, or None if it was never (completely) trained."""
    from forgetflow.models import load_checkpoint

    key = reference_key(data_md5, recipe_hash, seed)
    folder = references_dir(state_dir) / key
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    model, _ = load_checkpoint(folder / "checkpoint.pt")
    return Reference(model=model, checkpoint=folder / "checkpoint.pt", key=key, seed=seed, seconds=float(meta["train_seconds"]), cache_hit=True, meta=meta)


def ensure_reference(
    state_dir: Path,
    params,
    *,
    data_md5: str,
    train: LoadedSplit,
    val: LoadedSplit | None,
    spec,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
    dataset_dir: Path | None = None,
) -> Reference:
    """The reference for (data_md5, params.recipe_hash(), seed): from the cache, else trained now.

    `train` is the retained training split of the dataset version *after* the deletion; `val` only
    monitors training (it is never trained on), exactly as for the base model. `dataset_dir`, the
    version folder the splits were loaded from, lets a DDP retrain read them there instead of
    from a copy (its processes check they read the same samples).
    """
    from forgetflow.evaluation.config import evaluation_params
    from forgetflow.models import save_checkpoint
    from forgetflow.training import train_model

    recipe_hash = params.recipe_hash()
    key = reference_key(data_md5, recipe_hash, seed)
    folder = references_dir(state_dir) / key
    digest = sample_ids_digest(train)
    policy = evaluation_params(params).reference
    with _locked(references_dir(state_dir) / f".{key}.lock"):
        cached = load_cached_reference(state_dir, data_md5, recipe_hash, seed)
        if cached is not None:
            if cached.meta.get("train_ids_sha256") != digest:
                raise DataIntegrityError(
                    f"cached reference {key} was trained on other samples than the train split given for data version {data_md5}",
                    f"pass the DVC md5 of the dataset version the split was loaded from, or delete {folder}",
                )
            return cached
        if policy.nproc_per_node > 1:
            result, launch = _retrain_ddp(folder, params, policy, data_md5=data_md5, train=train, val=val, spec=spec, seed=seed, device=device, progress=progress, dataset_dir=dataset_dir, digest=digest)
        else:
            result = train_model(spec, params.train, train, val, device=device, seed=seed, progress=progress)
            launch = {"nproc_per_node": 1, "backend": None}
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": REFERENCE_FORMAT,
            "key": key,
            "data_md5": data_md5,
            "recipe_hash": recipe_hash,
            "seed": seed,
            "device": device,
            "train_seconds": result.seconds,
            "n_train": int(len(train.labels)),
            "train_ids_sha256": digest,
            "history": result.history,
            **launch,
        }
        tmp = folder / f".checkpoint.pt.tmp-{os.getpid()}"
        # A reference can be promoted to champion; PGU on it then needs its own layer statistics.
        layer_stats = None
        if params.train.store_layer_stats:
            from forgetflow.layer_stats import layer_stats_if_supported

            layer_stats, _ = layer_stats_if_supported(result.model, train.images, device=device)
        save_checkpoint(result.model, tmp, extra={"role": "reference", **{k: v for k, v in meta.items() if k != "history"}}, layer_stats=layer_stats)
        os.replace(tmp, folder / "checkpoint.pt")
        _write_json_atomic(folder / "meta.json", meta)
    return Reference(model=result.model, checkpoint=folder / "checkpoint.pt", key=key, seed=seed, seconds=result.seconds, cache_hit=False, meta=meta)


def _retrain_ddp(folder: Path, params, policy: ReferenceParams, *, data_md5: str, train: LoadedSplit, val: LoadedSplit | None, spec, seed: int, device: str, progress: bool, dataset_dir: Path | None, digest: str):
    """The recipe under torchrun (DDP); returns (TrainResult, what meta.json records about the launch).

    Works in a hidden folder inside the reference folder: the reference's lock covers it (pruning
    waits for it), and it is removed whether the launch succeeds or fails.
    """
    import contextlib
    import shutil
    import time

    from forgetflow.ddp_retrain import launch_ddp_retrain, write_splits
    from forgetflow.models import load_checkpoint
    from forgetflow.training import TrainResult

    work = folder / f".ddp-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        params_file = work / "params.json"
        params_file.write_text(json.dumps(params.model_dump(mode="json")))
        data = Path(dataset_dir) if dataset_dir is not None else write_splits(work / "splits.npz", train, val, spec)
        started = time.perf_counter()
        report = launch_ddp_retrain(data=data, params_file=params_file, seed=seed, output=work / "checkpoint.pt", nproc_per_node=policy.nproc_per_node, backend=policy.backend, device=device, progress=progress, expect_train_ids=digest)
        wall = time.perf_counter() - started
        model, payload = load_checkpoint(work / "checkpoint.pt")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # a failed retrain leaves no trace (only if nothing else is in there)
        raise
    shutil.rmtree(work, ignore_errors=True)
    if report["train_ids_sha256"] != digest or payload["spec"] != spec.as_dict():  # the IDs are checked before training too
        raise DataIntegrityError(
            f"the DDP retrain read other samples or another model spec from {data} than the train split and spec given for data version {data_md5}",
            "pass as dataset_dir the dataset version folder the splits were loaded from, or none (the splits are then copied)",
        )
    launch = {"nproc_per_node": report["world_size"], "backend": report["backend"], "ddp_wall_seconds": wall}
    return TrainResult(model=model, history=report["history"], seconds=float(report["train_seconds"])), launch


def reference_for_version(settings, params, dataset_name: str, data_md5: str, *, seed: int | None = None, progress: bool = True) -> Reference:
    """Convenience for flows: load the version's train/val splits and ensure its reference."""
    from forgetflow.data.store import DatasetVersion
    from forgetflow.evaluation.config import evaluation_params
    from forgetflow.training import model_spec_for

    version = DatasetVersion(settings.data_dir / dataset_name)
    seed = evaluation_params(params).reference.seed if seed is None else seed
    return ensure_reference(
        settings.state_dir,
        params,
        data_md5=data_md5,
        train=version.load("train"),
        val=version.load("val"),
        spec=model_spec_for(params.model, version.meta),
        seed=seed,
        device=settings.resolved_device(),
        progress=progress,
        dataset_dir=version.root,
    )


def cached_references(state_dir: Path) -> list[dict]:
    """meta.json of every complete cached reference (for listing and for erasure)."""
    root = references_dir(state_dir)
    if not root.is_dir():
        return []
    return [json.loads(meta.read_text()) for meta in sorted(root.glob("*/meta.json"))]


def prune_references(state_dir: Path, keep_data_md5: set[str] | frozenset[str]) -> list[str]:
    """Delete cached references of every data version not in `keep_data_md5`; return their keys.

    A reference trained on an older data version was trained on samples deleted since: erasure
    must remove it like any other copy of the forgotten data (the current version's is kept).
    """
    import shutil

    removed = []
    root = references_dir(state_dir)
    if not root.is_dir():
        return removed
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        meta_path = folder / "meta.json"
        data_md5 = json.loads(meta_path.read_text())["data_md5"] if meta_path.is_file() else None
        if data_md5 not in keep_data_md5:  # incomplete entries (no meta.json) go too
            with _locked(root / f".{folder.name}.lock"):
                shutil.rmtree(folder)
            (root / f".{folder.name}.lock").unlink(missing_ok=True)
            removed.append(folder.name)
    return removed
