"""DistributedDataParallel training of the one recipe: one process per device, started by torchrun.

Each process reads its rank from torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT), trains on `cuda:<local_rank>` (or the CPU), and joins a process group: `nccl` on CUDA,
`gloo` on the CPU. The epoch loop is `training.fit`, the same one the single-process recipe runs.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist

from forgetflow.data.store import LoadedSplit
from forgetflow.device import seed_everything
from forgetflow.errors import ConfigError
from forgetflow.models import ImageClassifier, ModelSpec, build_model, save_checkpoint
from forgetflow.params import TrainParams
from forgetflow.training import Shard, TrainResult, fit

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class DistributedEnv:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_env() -> DistributedEnv:
    """This process's place in the job, from the variables torchrun sets."""
    missing = [name for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigError(
            f"not started by torchrun: {', '.join(missing)} not set",
            "launch with `torchrun --standalone --nproc-per-node N -m forgetflow.ddp_retrain ...`, or set evaluation.reference.nproc_per_node",
        )
    return DistributedEnv(rank=int(os.environ["RANK"]), local_rank=int(os.environ["LOCAL_RANK"]), world_size=int(os.environ["WORLD_SIZE"]))


def resolve_backend(setting: str, device: str) -> str:
    """`auto`: nccl on CUDA, gloo on the CPU. nccl cannot run without CUDA."""
    if setting not in BACKENDS:
        raise ConfigError(f"unknown DDP backend {setting!r}", f"evaluation.reference.backend must be one of {', '.join(BACKENDS)}")
    if setting == "auto":
        return "nccl" if device.startswith("cuda") else "gloo"
    if setting == "nccl" and not device.startswith("cuda"):
        raise ConfigError("DDP backend nccl needs CUDA devices, but the retrain runs on the CPU", "set evaluation.reference.backend to auto or gloo")
    return setting


def rank_device(device: str, local_rank: int) -> str:
    """Every rank on its own GPU, `cuda:<local_rank>`; on the CPU all ranks share it."""
    if not device.startswith("cuda"):
        if device != "cpu":
            raise ConfigError(f"DDP training runs on CUDA or the CPU, not on {device!r}", "set FORGETFLOW_DEVICE=cuda or cpu, or evaluation.reference.nproc_per_node: 1")
        return "cpu"
    if local_rank >= torch.cuda.device_count():
        raise ConfigError(
            f"rank with local rank {local_rank} has no GPU: only {torch.cuda.device_count()} CUDA devices are visible",
            "set evaluation.reference.nproc_per_node to at most the number of GPUs",
        )
    torch.cuda.set_device(local_rank)
    return f"cuda:{local_rank}"


@contextmanager
def process_group(backend: str, device: str, env: DistributedEnv):
    """Join the job's process group (rendezvous through MASTER_ADDR:MASTER_PORT); always leave it."""
    extra = {"device_id": torch.device(device)} if device.startswith("cuda") else {}
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size, **extra)
    try:
        yield
    finally:
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], *, device: str) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)  # nccl reduces on the GPU only
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def train_distributed(spec: ModelSpec, recipe: TrainParams, train: LoadedSplit, val: LoadedSplit | None, *, env: DistributedEnv, device: str, seed: int, progress: bool = True) -> TrainResult:
    """The recipe on `env.world_size` processes (inside `process_group`); every rank returns the trained model.

    The global batch is `recipe.batch_size`, as in the single-process recipe: each rank trains on
    batch_size // world_size of its samples (one more on some ranks when it does not divide), and
    DDP's gradient all-reduce makes every step the step of the whole global batch. The learning
    rate therefore needs no scaling. BatchNorm statistics are per rank (no SyncBatchNorm); DDP
    broadcasts rank 0's running statistics at every step, so the checkpoint holds rank 0's.
    """
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # A weight with a size-1 dimension (a 1-channel stem) has ambiguous strides; DDP warns every step.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    seed_everything(seed)
    model = build_model(spec).to(device)  # same seed: identical initial weights (DDP broadcasts rank 0's as well)
    wrapped = DistributedDataParallel(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    torch.manual_seed(seed + 1_000_003 * env.rank)  # dropout masks differ between ranks, as between samples
    generator = torch.Generator().manual_seed(seed)  # the shared permutation: identical on every rank
    shard = Shard(rank=env.rank, world_size=env.world_size, all_reduce_sum=partial(all_reduce_sum, device=device))
    started = time.perf_counter()
    history = fit(wrapped, recipe, train, val, device=device, generator=generator, eval_model=model, shard=shard, progress=progress)
    seconds = time.perf_counter() - started
    model.eval()
    return TrainResult(model=model.cpu(), history=history, seconds=seconds)


def save_checkpoint_atomic(model: ImageClassifier, path: Path, *, extra: dict) -> Path:
    """Rank 0 only: write to a temporary name, then rename (a reader never sees half a checkpoint)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_checkpoint(model, tmp, extra=extra)
    os.replace(tmp, path)
    return path
