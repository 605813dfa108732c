"""Build the DatasetIndex: stat every file, reuse cached records, decode the rest in parallel once,
stack the per-image features and finish them in one vectorised step.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from dsaudit.config import AuditConfig
from dsaudit.index import hashing, io
from dsaudit.index.cache import CacheUnavailable, RecordCache, default_cache_dir
from dsaudit.index.dataset import TABLE_COLUMNS, DatasetIndex
from dsaudit.index.engine import map_files
from dsaudit.index.groups import apply_group_regex
from dsaudit.index.memo import Memo
from dsaudit.index.layout import Layout, display_path, is_inside
from dsaudit.index.records import RECORD_VERSION, analyse_file_pickled

ProgressFactory = Callable[[int], Callable[[int], None]]


def _crash_record(task: tuple[str, str, int]) -> dict[str, Any]:
    return {"kind": "broken-image", "format": "", "width": 0, "height": 0, "mode": "", "channels": 0,
            "readable": False, "truncated": False, "bomb": False, "sha256": "", "features": None,
            "error": "the image decoder crashed on this file (worker process died)"}


def _stat_record(error: str) -> dict[str, Any]:
    rec = _crash_record(("", "", 0))
    rec.update(kind="unreadable", error=error)
    return rec


def build_index(layout: Layout, config: AuditConfig,
                progress: ProgressFactory | None = None) -> DatasetIndex:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    entries = layout.entries
    stats: list[io.Stamp | None] = []
    records: list[dict[str, Any] | None] = [None] * len(entries)
    for i, e in enumerate(entries):
        try:
            stats.append(io.stamp(e.abs_path))  # (size, mtime_ns, inode, ctime_ns, device)
        except OSError as exc:   # gone, unreadable, or not a regular file (io.stat)
            stats.append(None)
            records[i] = _stat_record(f"cannot read file: {exc.strerror or exc}")
    timings["stat"] = time.perf_counter() - t0

    version = f"{RECORD_VERSION}.{hashing.FEATURES_VERSION}.{config.integrity.max_pixels}"
    cache = None
    root_key = ""
    hits: dict[str, dict[str, Any]] = {}
    t1 = time.perf_counter()
    cache_note = _cache_inside_dataset(layout, config) if config.cache else ""
    cache_notes: list[str] = []
    if config.cache and not cache_note:
        try:
            root_key = (str(layout.root) if io.is_remote(str(layout.root)) else os.path.realpath(layout.root))
            root_key += f"::{layout.manifest}" if layout.manifest else ""
            cache = RecordCache(default_cache_dir(config.cache_dir), root_key, version)
            cache_notes = cache.notes
            hits = cache.lookup((e.rel, s) for e, s in zip(entries, stats) if s is not None)
        except CacheUnavailable as exc:  # read-only or impossible folder: one note, no cache
            cache, hits, cache_note = None, {}, str(exc)
        except Exception as exc:  # an unusable cache must never stop a scan, nor go silent
            cache, hits = None, {}
            cache_note = f"the record cache could not be used ({type(exc).__name__}: {exc}); scanning without it"
    timings["cache_read"] = time.perf_counter() - t1

    todo: list[int] = []
    for i, (e, s) in enumerate(zip(entries, stats)):
        if s is None:
            continue   # recorded above
        if e.rel in hits:
            records[i] = hits[e.rel]
        else:
            todo.append(i)

    t2 = time.perf_counter()
    blobs: dict[int, bytes] = {}
    if todo:
        tick = progress(len(todo)) if progress else None
        tasks = [(entries[i].abs_path, _ext(entries[i].abs_path), config.integrity.max_pixels, stats[i].size)
                 for i in todo]   # the size from the stat above: each file is stat'ed once
        results = map_files(analyse_file_pickled, tasks, engine=config.engine, jobs=config.resolved_jobs(),
                            scheduler=config.scheduler, progress=tick, crash_result=_crash_record)
        for i, rec in zip(todo, results):
            if isinstance(rec, bytes):   # pickled by the worker: kept as it is for the cache
                blobs[i] = rec
                rec = pickle.loads(rec)
            records[i] = rec
    timings["decode"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    if cache is not None:
        try:
            cache.store((entries[i].rel, stats[i], blobs.get(i) or records[i]) for i in todo
                        if stats[i] is not None and not records[i]["error"].startswith("the image decoder crashed"))
            cache.prune(e.rel for e in entries)
        except Exception:
            pass
        finally:
            cache.close()
    timings["cache_write"] = time.perf_counter() - t3

    t4 = time.perf_counter()
    table, features = _assemble(layout, stats, records)
    if config.leakage.group_regex:
        from_regex = apply_group_regex(table["path"], config.leakage.group_regex)
        table["group"] = table["group"].where(table["group"] != "", from_regex)
    index = DatasetIndex(layout.root, layout, table, features, timings,
                         stats={"cache_hits": len(entries) - len(todo), "decoded": len(todo)})
    if cache_note:
        index.notes.append(cache_note)
    index.notes.extend(cache_notes)
    index.fingerprint = table_fingerprint(table)
    if cache is not None:
        index.memo = Memo(default_cache_dir(config.cache_dir), root_key)
    timings["assemble"] = time.perf_counter() - t4
    t5 = time.perf_counter()
    if len(features):
        # finalize: the vectorised hashes and descriptors; complete: what extract left to be measured
        # over all images at once (borders, inner views and properties of 32x32 images)
        done = index.memoize("features", f"finalize:{hashing.FEATURES_VERSION}",
                             lambda: {"finalize": hashing.finalize(features), "complete": hashing.complete(features)})
        features.update(done["finalize"])
        hashing.apply_completed(features, done["complete"])
    timings["finalize"] = time.perf_counter() - t5
    timings["index_total"] = time.perf_counter() - t0
    return index


def _cache_inside_dataset(layout: Layout, config: AuditConfig) -> str:
    """A note when the cache folder (--cache-dir, DSAUDIT_CACHE_DIR, XDG_CACHE_HOME or ~/.cache)
    lies inside the dataset, "" otherwise. A scan never writes into a dataset, so it then runs
    without a cache rather than failing: the folder may come from the environment (a dataset that
    holds the home folder), not from a choice the user made for this scan."""
    if io.is_remote(str(layout.root)):
        return ""
    folder = default_cache_dir(config.cache_dir)
    if is_inside(folder, layout.root):
        return (f"the cache folder {display_path(os.path.realpath(folder))} is inside the dataset; scanning "
                "without a cache (set --cache-dir or DSAUDIT_CACHE_DIR to a folder elsewhere)")
    return ""


def table_fingerprint(table: pd.DataFrame) -> str:
    """Digest of what every dataset-level result depends on: each file's path, split, label, content
    hash and whether it has features. Same data in the same layout, same fingerprint."""
    digest = hashlib.sha256()
    cols = zip(table["path"], table["split"], table["label"], table["sha256"], table["has_features"])
    for row in sorted(cols):
        digest.update("\0".join(map(str, row)).encode("utf-8", "backslashreplace"))
        digest.update(b"\n")
    return digest.hexdigest()[:24]


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower().lstrip(".")


def _assemble(layout: Layout, stats, records) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The table, built column by column (much faster than one dict per row), and the stacked
    feature arrays (zeros where a file has no features)."""
    entries = layout.entries
    stats = [s if s is not None else (0, 0) for s in stats]
    col = {
        "path": [e.rel for e in entries], "abs_path": [e.abs_path for e in entries],
        "split": [e.split for e in entries], "label": [e.label for e in entries],
        "group": [e.group for e in entries], "order": np.array([e.order for e in entries], dtype=np.int64),
        "ext": [_ext(e.abs_path) for e in entries],
        "bytes": np.array([s[0] for s in stats], dtype=np.int64),
        "mtime_ns": np.array([s[1] for s in stats], dtype=np.int64),
    }
    for key in ("kind", "format", "mode", "error", "sha256"):
        col[key] = [r.get(key, "") for r in records]
    for key in ("width", "height", "channels"):
        col[key] = np.array([r[key] for r in records], dtype=np.int64)
    for key in ("readable", "truncated", "bomb"):
        col[key] = np.array([bool(r[key]) for r in records], dtype=bool)
    present = [r.get("features") is not None for r in records]
    col["has_features"] = np.array(present, dtype=bool)
    table = pd.DataFrame(col, columns=list(TABLE_COLUMNS) + ["sha256"])
    # features travel as bytes (hashing.FEATURE_SPEC); one lacking from a record is zeros there
    features = hashing.stack_features([r.get("features") for r in records])
    return table, features
