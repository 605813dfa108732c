"""Runs the per-file work on all local cores. The one place a distributed engine would plug in.

Work is sent in batches to a process pool (decoding is CPU-bound and holds the GIL). Results come
back in input order. If a decoder crashes a worker process outright (a segfault in a native codec),
the remaining files are retried one by one, and the file that kills a worker gets an error record
instead of taking the scan down with it.

Workers never outlive the scan. Each asks the kernel for SIGKILL when its parent dies
(PR_SET_PDEATHSIG on Linux) and watches a pipe whose only writer is the parent (EOF: the parent is
gone, on any system); without both, a killed scan left its workers waiting and holding stdout open,
so `dsaudit scan ... | cat` never ended. When the scan stops (Ctrl-C, SIGTERM, an error), queued work
is cancelled and the workers are killed instead of draining the queue. Workers ignore SIGINT: the
parent decides how a Ctrl-C ends.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence

from dsaudit.index.io import is_remote

ProgressFn = Callable[[int], None]


def _run_batch(func: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    first = items[0] if items else None
    if isinstance(first, tuple) and first and isinstance(first[0], str) and is_remote(first[0]):
        from dsaudit.index import objects  # remote objects: fetch the batch concurrently

        return objects.run_batch(func, items)
    return [func(item) for item in items]


def _die_with_parent(parent: int, watch_fd: int, parent_end: int) -> None:
    """Worker initializer: end this process when the scan that started it is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if watch_fd < 0:  # not forked (spawn): the pipe was not inherited
        return
    try:
        os.close(parent_end)  # a worker's copy of the write end would keep the pipe open for ever
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        try:
            while os.read(watch_fd, 1):
                pass
        except OSError:
            pass
        os._exit(1)  # EOF: every copy of the parent's write end is closed, so the parent is gone

    threading.Thread(target=watch, name="dsaudit-parent-watch", daemon=True).start()


class _Pool(ProcessPoolExecutor):
    """A process pool whose workers die with their parent and are killed, not drained, on exit by
    an exception (KeyboardInterrupt, SIGTERM, an error)."""

    def __init__(self, jobs: int, mp_context):
        self._watch_r, self._watch_w = os.pipe()
        forked = mp_context.get_start_method() == "fork"
        super().__init__(max_workers=jobs, mp_context=mp_context, initializer=_die_with_parent,
                         initargs=(os.getpid(), self._watch_r if forked else -1, self._watch_w if forked else -1))

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and not issubclass(exc_type, BrokenProcessPool):
                self.kill_workers()
            return super().__exit__(exc_type, exc, tb)
        finally:
            for fd in (self._watch_r, self._watch_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def kill_workers(self) -> None:
        manager = getattr(self, "_executor_manager_thread", None)
        for proc in list((getattr(self, "_processes", None) or {}).values()):
            try:
                proc.kill()
            except Exception:
                pass
        self.shutdown(wait=False, cancel_futures=True)
        # shutdown(wait=False) forgets the manager thread; join it here, or it may still be closing
        # its wakeup pipe when the interpreter exits (an "Exception ignored in _python_exit" trace)
        if manager is not None:
            manager.join(timeout=30)


def _pool(jobs: int) -> ProcessPoolExecutor:
    # fork is fastest on Linux and safe here: no threads or TensorFlow are running at this point.
    method = "fork" if "fork" in mp.get_all_start_methods() else None
    return _Pool(jobs, mp.get_context(method))


def run_parallel(func: Callable[[Any], Any], items: Sequence[Any], jobs: int,
                 progress: ProgressFn | None = None, crash_result: Callable[[Any], Any] | None = None,
                 batch_size: int | None = None) -> list[Any]:
    """Apply `func` to every item, in parallel when jobs > 1; return results in input order."""
    if not items:
        return []
    jobs = max(1, min(jobs, len(items)))
    if jobs == 1:
        out = []
        for item in items:
            out.append(func(item))
            if progress:
                progress(1)
        return out
    batch_size = batch_size or max(8, min(256, len(items) // (jobs * 8) or 1))
    batches = [(start, items[start:start + batch_size]) for start in range(0, len(items), batch_size)]
    results: list[Any] = [None] * len(items)
    pending = {start for start, _ in batches}
    try:
        with _pool(jobs) as pool:
            futures = {pool.submit(_run_batch, func, batch): (start, batch) for start, batch in batches}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for fut in done:
                    start, batch = futures.pop(fut)
                    results[start:start + len(batch)] = fut.result()
                    pending.discard(start)
                    if progress:
                        progress(len(batch))
    except BrokenProcessPool:
        _retry_one_by_one(func, [b for b in batches if b[0] in pending], results, progress, crash_result)
    return results


def _retry_one_by_one(func, pending_batches, results, progress, crash_result) -> None:
    """After a worker died, isolate the culprit: each remaining file in a fresh single worker."""
    for start, batch in pending_batches:
        for offset, item in enumerate(batch):
            try:
                with _pool(1) as pool:
                    results[start + offset] = pool.submit(func, item).result()
            except BrokenProcessPool:
                if crash_result is None:
                    raise
                results[start + offset] = crash_result(item)
            if progress:
                progress(1)


def map_files(func: Callable[[Any], Any], items: Sequence[Any], *, engine: str = "local",
              jobs: int = 1, scheduler: str = "", progress: ProgressFn | None = None,
              crash_result: Callable[[Any], Any] | None = None) -> list[Any]:
    """Run the per-file work on the chosen engine: the local process pool, or Dask."""
    if engine == "dask":
        from dsaudit.index import dask_engine

        return dask_engine.run(func, items, scheduler=scheduler, progress=progress,
                               crash_result=crash_result)
    return run_parallel(func, items, jobs, progress=progress, crash_result=crash_result)

