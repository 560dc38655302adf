"""torch.distributed set-up for ``torchrun``: the same training command on one process or many.

Under ``torchrun --nproc_per_node=N`` the environment names this process's rank; the trainer
then wraps its modules in DistributedDataParallel (gloo on the CPU, NCCL on CUDA), shards the
data by rank, and lets rank 0 alone write checkpoints, logs and exports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    #: The torch.distributed backend ("gloo", "nccl"), or None for a single process.
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun; a no-op for a single process."""
    if not launched_by_torchrun():
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    info.backend = str(dist.get_backend())
    return info


def describe_world(info: DistInfo, device: torch.device, batch_size: int, grad_accum: int) -> str:
    """One line for rank 0 to print: processes, backend, device and the batch every step sees."""
    per_step = batch_size * grad_accum * info.world
    accum = f" x {grad_accum} accumulated" if grad_accum > 1 else ""
    return (f"distributed: {info.world} processes (torchrun), backend {info.backend}, device {device.type}; "
            f"run.batch_size {batch_size} per process{accum} = {per_step} samples per step")


def distributed_device(requested: str) -> torch.device:
    """The device of this process: under torchrun on CUDA, the GPU of its local rank."""
    from mka_core.devices import resolve_device

    device = resolve_device(requested)
    if device.type == "cuda" and launched_by_torchrun():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled and dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world
    return value


def all_reduce_logs(logs: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """The mean of every logged value over all processes (each logs its own shard's losses).

    Every rank calls it at the same steps with the same keys (the target's logs do not depend on
    the data), so the one collective lines up; a single process gets ``logs`` back unchanged.
    """
    if not (info.enabled and dist.is_initialized()) or not logs:
        return logs
    keys = sorted(logs)
    # NCCL reduces CUDA tensors only; gloo takes CPU ones.
    where = device if info.backend == "nccl" else torch.device("cpu")
    values = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64, device=where)
    dist.all_reduce(values)
    values /= info.world
    reduced = dict(zip(keys, values.cpu().tolist()))
    return {k: float(reduced[k]) for k in logs}  # the target's own order, for display


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
