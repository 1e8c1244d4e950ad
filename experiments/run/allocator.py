"""Keep freed memory inside the process, so training steps stop paying page faults for it.

glibc's malloc serves the large blocks of a training step (activations and their gradients,
megabytes each) from the top of its heap or from fresh ``mmap``s, and hands memory back to the
kernel as soon as more than a few megabytes lie free at the top of the heap (its trim threshold
follows the largest block freed, times two). A training step frees most of its activations in
the backward pass, so every step returns the memory and the next step takes it again, one page
fault per 4 KiB page: 1,700-5,200 minor faults a step for DeiT and LocalViT micro at batch 64
as the runs step (11,000-15,000, 7% of the step in the kernel, where the gradients are freed
before the forward), and the cache-cold zeroing of every page besides.

``keep_freed_memory`` sets glibc's two thresholds once per process: blocks up to 32 MiB (the
largest threshold glibc accepts on 64-bit) come from the heap, and up to 1 GiB of free memory
stays in the process. Numbers are untouched (where a tensor lives does not change what is
computed on it; PyTorch aligns its blocks itself); what changes is the time and the process's
resident memory between steps, which stays at its peak. ``make bench`` measures the effect
(``allocator``). ``ABLATE_MALLOC=default`` keeps glibc's defaults. Other C libraries, and
other systems, are left as they are.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for it on 64-bit systems
TRIM_THRESHOLD = 2**30
DISABLE = "ABLATE_MALLOC"  # =default: leave the C library's allocator as it is


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (module docstring); True if both were taken."""
    if os.environ.get(DISABLE) == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc, or no symbol table to look in
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
