"""Threads for the vectorised numpy work (numpy releases the GIL in gathers, ufuncs and matmuls):
how many (`workers`, capped by DSAUDIT_THREADS and `thread_limit`), BLAS threads inside our own
pools (`blas_threads`), and an ordered `parallel_map`. Used by the descriptors (index/hashing.py)
and the near-duplicate engine (similarity/)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

_THREAD_LIMIT: list[int] = []


def workers() -> int:
    """Threads for the vectorised joins (numpy releases the GIL in gathers, ufuncs and matmuls):
    the usable cores, capped by the env variable DSAUDIT_THREADS and by `thread_limit`."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    try:
        want = int(os.environ.get("DSAUDIT_THREADS", "") or 0)
    except ValueError:
        want = 0
    if want > 0:
        n = min(n, want)
    if _THREAD_LIMIT:
        n = min(n, _THREAD_LIMIT[-1])
    return max(1, n)


@contextmanager
def thread_limit(n: int | None):
    """Use at most n threads inside the block (e.g. the scan's --jobs); None: no limit."""
    if n is None or n <= 0:
        yield
        return
    _THREAD_LIMIT.append(int(n))
    try:
        yield
    finally:
        _THREAD_LIMIT.pop()


@contextmanager
def blas_threads(n: int | None):
    """Limit BLAS threads (when our own thread pool already uses every core); no-op for None."""
    if n is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn brings it
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def parallel_map(fn, items: list, n_workers: int | None = None) -> list:
    """[fn(x) for x in items] over a thread pool (same order); serial for one worker or item."""
    n_workers = workers() if n_workers is None else n_workers
    if n_workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(n_workers, len(items))) as ex:
        return list(ex.map(fn, items))
