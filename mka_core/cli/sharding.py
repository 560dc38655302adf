"""`mka generate` under ``torchrun``: each process makes and writes its share of the outputs.

``torchrun --nproc_per_node=K -m mka_core.cli.main generate --prompts FILE -o out/`` starts K
processes with ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` set. Each one builds the same
request, takes a contiguous share of its flattened batch (output ``i`` = input ``i // n``,
candidate ``i % n``), runs on its own device and writes its outputs and sidecars. Because
output ``i`` always uses seed ``seed + i`` and every process conditions the whole batch (a
text batch is padded to its longest prompt), the files are the ones a single process writes.

* With more than one input, shares are whole inputs (a rank gets inputs ``[r*J/K, (r+1)*J/K)``
  with all their candidates), so ``--rank-with`` orders each input's candidates as one
  process would. With one input, the candidates are shared out (except with ``--rank-with``,
  which then runs on rank 0 alone).
* A rank whose share is empty (more processes than outputs) says so and exits 0.
* ``--replay`` writes one output: rank 0 does it, the others exit 0.
* ``--seed`` is needed for the same files as a single run: without it every process would
  pick its own random seed, so a sharded run without ``--seed`` is refused.

No process group is created: writing files needs no collective. Output names are claimed
with hard links (:mod:`mka_core.outputs.files`), so processes sharing a folder never collide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mka_core.errors import InputError
from mka_core.request import GenerationRequest


@dataclass
class Shard:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    #: Flattened-batch indices this process makes (None: all of them).
    rows: range | None = None

    @classmethod
    def from_environment(cls, request: GenerationRequest, *, replay: bool = False, ranked: bool = False) -> "Shard":
        rank, world, local_rank = _torchrun_environment()
        if world <= 1:
            return cls()
        if replay:
            return cls(rank, world, local_rank, None if rank == 0 else range(0))
        if request.seed is None:
            raise InputError(f"mka generate under torchrun ({world} processes) needs --seed, so that every "
                             "process draws the seeds one run would; add --seed N.")
        total, n = request.outputs, request.n
        count = total // n
        if count > 1:
            first, last = rank * count // world, (rank + 1) * count // world
            rows = range(first * n, last * n)
        elif ranked:
            rows = range(total) if rank == 0 else range(0)
        else:
            rows = range(rank * total // world, (rank + 1) * total // world)
        return cls(rank, world, local_rank, rows)

    def title(self) -> str:
        return "mka generate" if self.world <= 1 else f"mka generate (rank {self.rank} of {self.world})"


def _torchrun_environment() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise InputError(f"WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (as torchrun sets them): {exc}.") from exc
    if world > 1 and not 0 <= rank < world:
        raise InputError(f"RANK {rank} is outside WORLD_SIZE {world}; start the processes with torchrun.")
    return rank, world, local_rank


def shard_device(requested: str, shard: Shard) -> str:
    """Each process on its own device: ``cuda:LOCAL_RANK`` when CUDA is there (for ``auto`` or ``cuda``), else the CPU."""
    if shard.world <= 1:
        return requested
    name = (requested or "auto").strip().lower()
    if name in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{shard.local_rank % torch.cuda.device_count()}"
        if name == "auto":
            return "cpu"
    return requested
