"""Peak memory of this process, for logs and benchmarks.

On a CUDA device: the most the caching allocator ever handed to tensors
(`torch.cuda.max_memory_allocated`) — what decides an out-of-memory error. On a CPU: the
process's peak resident set size (`getrusage` ru_maxrss, KiB on Linux), which also counts the
Python interpreter, libraries and the allocator's slack; it never goes down.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys

import torch


def peak_memory_gb(device: torch.device | str | None = None) -> float:
    """Peak memory in GiB: CUDA allocated on a CUDA device, else the process's peak RSS."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**30
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes on macOS, KiB on Linux


def release_memory() -> None:
    """Give memory no object holds any more back: collect cycles, empty CUDA's cache, and on glibc
    return the heap's free pages to the system (`malloc_trim`) — otherwise a CPU process that loads
    one model after another keeps the first one's pages resident, though unused."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to trim
            pass
