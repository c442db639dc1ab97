"""Process-group handling for runs launched with several processes (`torchrun`, `accelerate launch`).

On CPU the group uses gloo, on GPUs nccl with each process on its own device (LOCAL_RANK). A single process
needs no group at all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int]:
    """Join the launcher's process group if there is one; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # Ranks wait for each other while the slowest finishes its share of generation: allow hours, not minutes.
        dist.init_process_group("nccl" if cuda else "gloo", timeout=dt.timedelta(hours=6))
    return dist.get_rank(), dist.get_world_size()


@contextlib.contextmanager
def main_process_first():
    """Run the body on rank 0 first (e.g. building a cache), then on the other ranks (which then reuse it).

    Every rank leaves together: rank 0 must not read what the other ranks may still be writing.
    """
    rank, _ = init_distributed()
    if rank != 0:
        barrier()
    yield
    if rank == 0:
        barrier()
    barrier()


def barrier() -> None:
    """Wait for every process (no-op for one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
