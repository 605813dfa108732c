"""Give the heap's free pages back to the operating system after the index pass.

The index pass holds one record per file (a dict of small strings and feature bytes, about 2.5 KB
an image) until the table and the feature arrays are assembled, then drops them. glibc keeps the
freed small blocks in its heap, so the process's resident memory stays at the pass's peak, and the
search's large arrays (allocated with mmap, outside that heap) come on top of it. ``malloc_trim``
returns the free pages: on 10,000 CIFAR-sized photos the resident memory after the pass went from
15.8 to 10.9 KB an image (benchmarks/scale_1m.py prints the peak per phase). Elsewhere than glibc
(macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _trim():
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot."""
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
