"""Keep freed memory in the process, so that the large tensors of every step are reused in place.

glibc's ``malloc`` hands every block above its mmap threshold (128 KiB, adapting up to 32 MiB)
back to the kernel when it is freed; the next tensor of that size is mapped afresh, and each of
its 4 KiB pages faults and is zeroed by the kernel on first touch.  A sparse step allocates and
frees its states (B·N numbers: 12.8 MB at 10⁵ neurons and B = 32) and the sparse FOP its
sensitivities (B numbers per (edge, neuron) pair: over 100 MB) at every tick, so on a large mesh a
step spent as much time in page faults as in its products (docs/performance.md).

:func:`keep_freed_memory` sets glibc's ``M_MMAP_MAX`` to 0 (every block comes from the heap) and
``M_TRIM_THRESHOLD`` to 2 GiB (freed memory at the heap's top stays mapped up to that size): a
training loop's blocks are then reused step after step without a fault.  The price is that the
process keeps what it once used (its resident size does not shrink after a peak), and until the
heap has settled its free blocks can hold a few times one step's working set (a loop allocating
two 40 MiB tensors per step settles at 550 MiB resident against 270 MiB when every block is
mapped afresh; the sparse FOP at 10⁵ neurons peaked 5 % higher).  The command line and the
scale benchmark call it; a library user may call it once.  ``MESHPROP_KEEP_FREED_MEMORY=0`` in
the environment turns it off; elsewhere than glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["ENVIRONMENT_VARIABLE", "keep_freed_memory"]

#: set to 0 to leave glibc's defaults alone
ENVIRONMENT_VARIABLE = "MESHPROP_KEEP_FREED_MEMORY"

# mallopt parameters of glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: freed memory at the top of the heap that stays mapped (the largest value mallopt takes)
TRIM_THRESHOLD = 2**31 - 1

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); True when applied,
    False where it is not glibc or ``MESHPROP_KEEP_FREED_MEMORY=0``.  Idempotent: later calls
    return the first call's answer."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(ENVIRONMENT_VARIABLE, "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl has no such symbol)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
