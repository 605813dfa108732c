"""The per-file work as Dask tasks: the index pass on a Dask cluster (``--engine dask``).

The file list is cut into partitions (a few per worker thread, so a slow partition does not hold
up the end of the scan); each partition is one task that applies the per-file function to its
files and returns their records. Records come back in input order, so the index table is the
same as the local engine's.

Remote objects: the client already knows every object's size and ETag from the listing, and ships
them with the partition, so a worker needs no HEAD request per object; it then fetches a window of
objects concurrently (fsspec's async gather) before decoding them, instead of waiting for one GET
after another.

Where the cluster comes from, in this order: the ``scheduler`` argument (``--scheduler``), the
``DASK_SCHEDULER_ADDRESS`` environment variable (the Dask convention), else a ``LocalCluster`` of
worker processes on this machine (one single-threaded worker per core; decoding holds the GIL).
Workers of a remote cluster need dsaudit (same version) and the dataset's store: the same local
paths on a shared filesystem, or the credentials of the object store in their own environment.

Failures: the per-file function never raises (a file that cannot be read is an error record). When
a worker process dies mid-task, Dask reschedules its tasks on the surviving workers (up to
``distributed.scheduler.allowed-failures`` times). A partition that still kills workers is split
into single files and retried; the one file that keeps killing workers (a crashing native decoder)
gets ``crash_result(file)`` instead of failing the scan.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import Any, Callable, Sequence

from dsaudit.index.layout import DatasetError

ProgressFn = Callable[[int], None]


class EngineError(DatasetError):
    """The Dask engine cannot run (not installed, scheduler unreachable): one clear line, exit 2."""


def _run_batch(func: Callable[[Any], Any], items: Sequence[Any],
               stats: dict[str, tuple[int, int]] | None = None) -> list[Any]:
    """One partition on a worker; remote objects (with `stats` from the listing) are prefetched."""
    if not stats:
        return [func(item) for item in items]
    from dsaudit.index import objects

    return objects.run_batch(func, items, stats)


def _remote_stats(batch: Sequence[Any]) -> dict[str, tuple[int, int]] | None:
    from dsaudit.index import objects
    from dsaudit.index.io import is_remote

    urls = [u for u in map(objects.url_of, batch) if u and is_remote(u)]
    return (objects.known(urls) or None) if urls else None


def _cores() -> int:
    """The cores this process may use (a local Dask cluster gets one worker per core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def scheduler_address(scheduler: str = "") -> str:
    """The scheduler to use: the argument, else $DASK_SCHEDULER_ADDRESS, else "" (a LocalCluster)."""
    return (scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS", "")).strip()


SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")  # distributed's network comms (inproc: same process only)
_ADDRESS = re.compile(r"(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
                      r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")
EXAMPLE = "tcp://10.0.0.5:8786"


def address_problem(address: str) -> str | None:
    """Why `address` cannot be a Dask scheduler address, or None when its form is right.

    Checked without importing Dask, when the configuration is loaded: distributed only notices a
    malformed address inside Client(), whose half-made instance then waits twice the connect
    timeout (40 s) in __del__ and prints a traceback. Form: [SCHEME://]HOST:PORT."""
    if address.startswith("inproc://"):  # an in-process cluster (Python API use)
        return None if len(address) > len("inproc://") else f"{address!r} names no in-process scheduler"
    m = _ADDRESS.fullmatch(address)
    if m is None:
        return f"{address!r} is not a Dask scheduler address (want [tcp://]HOST:PORT, e.g. {EXAMPLE})"
    scheme = (m.group("scheme") or "tcp").lower()
    if scheme not in SCHEMES:
        return f"unknown scheme {scheme!r} in {address!r} (Dask schedulers listen on {', '.join(SCHEMES)})"
    if not 1 <= int(m.group("port")) <= 65535:
        return f"port {m.group('port')} in {address!r} is not between 1 and 65535"
    return None


def _abandon(client) -> None:
    """Shut a Client whose constructor failed, at once: its __del__ would call close(), which waits
    twice the timeout for a scheduler that never answered and then prints a traceback at exit."""
    with contextlib.suppress(Exception):  # distributed internals: best effort
        client.status = "closed"          # close() returns at once for a closed client
        client._loop_runner.stop()        # the event-loop thread that start() began


def _client(address: str, timeout: str):
    """Client(address), or the exception it raised without leaving a half-made client behind."""
    from distributed import Client

    class _Client(Client):
        def __init__(self, *args, **kwargs):
            try:
                super().__init__(*args, **kwargs)
            except BaseException:
                _abandon(self)
                raise

    return _Client(address, timeout=timeout, set_as_default=False)


def connect(scheduler: str = "", n_workers: int | None = None, timeout: str = "20s"):
    """(client, cluster or None): a client of the given scheduler, or of a new LocalCluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise EngineError("--engine dask needs Dask: pip install 'dsaudit[dask]'") from None
    address = scheduler_address(scheduler)
    if address:
        problem = address_problem(address)
        if problem:
            source = "--scheduler" if scheduler.strip() else "$DASK_SCHEDULER_ADDRESS"
            raise EngineError(f"{source}: {problem}")
        try:
            return _client(address, timeout), None
        except Exception as exc:  # OSError/TimeoutError, but also TypeError (tls:// without TLS config)
            detail = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            raise EngineError(f"cannot connect to the Dask scheduler at {address}: {detail}") from None
    cluster = LocalCluster(n_workers=n_workers or _cores(), threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    try:
        return Client(cluster, set_as_default=False), cluster
    except Exception:
        cluster.close()
        raise


def _partition_size(n_items: int, slots: int) -> int:
    # About 4 partitions per worker thread: balances load without flooding the scheduler; bounded
    # so a partition's records stay small to ship (a few MB) and progress stays fine-grained.
    return max(1, min(512, -(-n_items // max(1, slots * 4))))


def run(func: Callable[[Any], Any], items: Sequence[Any], scheduler: str = "",
        progress: ProgressFn | None = None, crash_result: Callable[[Any], Any] | None = None,
        client=None, partition_size: int | None = None) -> list[Any]:
    """Apply `func` to every item on a Dask cluster; results in input order."""
    items = list(items)
    if not items:
        return []
    own = client is None
    cluster = None
    if own:
        client, cluster = connect(scheduler)
    try:
        return _run(client, func, items, progress, crash_result, partition_size)
    finally:
        if own:
            client.close()
            if cluster is not None:
                cluster.close()


def _run(client, func, items, progress, crash_result, partition_size) -> list[Any]:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    slots = sum(client.nthreads().values()) or 1
    size = partition_size or _partition_size(len(items), slots)
    results: list[Any] = [None] * len(items)
    futures = {}
    for start in range(0, len(items), size):
        batch = items[start:start + size]
        fut = client.submit(_run_batch, func, batch, _remote_stats(batch), pure=False)
        futures[fut] = (start, batch)
    failed: list[tuple[int, list[Any]]] = []
    for fut in as_completed(list(futures), loop=client.loop):
        start, batch = futures.pop(fut)
        try:
            out = fut.result()
        except KilledWorker:
            failed.append((start, batch))
            continue
        except ImportError as exc:
            raise EngineError(f"the Dask workers cannot run dsaudit ({type(exc).__name__}: {exc}); install "
                              "the same dsaudit version (and its extras, e.g. dsaudit[s3]) on every worker") from None
        finally:
            fut.release()
        results[start:start + len(batch)] = out
        if progress:
            progress(len(batch))
    # Partitions that kept killing workers: isolate the culprit. One file at a time, so that a death
    # is charged to the file that caused it (a task queued on a dying worker counts as suspect too,
    # and innocent files submitted together would be blamed with it).
    for start, batch in failed:
        for offset, item in enumerate(batch):
            fut = client.submit(func, item, pure=False)
            try:
                results[start + offset] = fut.result()
            except KilledWorker:
                if crash_result is None:
                    raise
                results[start + offset] = crash_result(item)
            finally:
                fut.release()
            if progress:
                progress(1)
    return results
