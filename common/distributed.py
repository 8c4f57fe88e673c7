"""Process-group facts read from the launcher's environment (deepspeed, torchrun, accelerate),
and the few collective operations our own training loops (PPO, BCQ) need."""

from __future__ import annotations

import os

import torch


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Only rank 0 writes run folders and logs to the trackers."""
    return rank() == 0


def device() -> torch.device:
    """This process's device: its local GPU, else the CPU."""
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def is_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init() -> None:
    """Join the process group the launcher describes (nccl on GPUs, gloo on CPUs); no-op alone."""
    if world_size() > 1 and not is_initialized():
        import deepspeed

        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:
    import torch.distributed as dist

    if is_initialized():
        dist.barrier()


def all_gather_objects(obj) -> list:
    """Every rank's `obj`, in rank order (a one-item list when alone)."""
    if not is_initialized():
        return [obj]
    import torch.distributed as dist

    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_across(stats: dict[str, float]) -> dict[str, float]:
    """Average a dict of floats over ranks (every rank must pass the same keys, in order)."""
    if not is_initialized() or not stats:
        return stats
    import torch.distributed as dist

    values = torch.tensor(list(stats.values()), dtype=torch.float64, device=device())
    dist.all_reduce(values)
    return dict(zip(stats, (values / world_size()).cpu().tolist()))
