"""The scan's memory cuts: the heap's free pages go back after the index pass (index/heap.py), and
the search reads the index's own feature arrays when every row is an image (similarity/views.py)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_heap_pages_go_back_to_the_system():
    from dsaudit.index.heap import release_free_memory

    release_free_memory()
    # 200,000 small blocks (what the index pass's records are made of), the last one kept so the
    # heap's top cannot shrink on its own: freeing the others leaves free pages inside the heap
    blocks = [bytes([i % 251]) * 1000 for i in range(200_000)]
    keep = blocks[-1]
    before = _rss()
    del blocks
    after_free = _rss()
    assert release_free_memory()
    after_trim = _rss()
    assert keep
    assert before - after_free < 50e6 < after_free - after_trim, (before, after_free, after_trim)


def test_views_of_every_row_share_the_index_arrays_and_a_subset_copies():
    from dsaudit.index.hashing import finalize
    from dsaudit.similarity.views import Views

    rng = np.random.default_rng(0)
    thumbs = rng.integers(0, 256, (6, 32, 32), dtype=np.uint8)
    feats = {"thumb": thumbs, "inner": thumbs[:, ::-1].copy(),
             "border": np.array([[0] * 4, [1] * 4] * 3, np.uint16), **finalize({"thumb": thumbs})}
    whole = Views.of_index(feats, np.arange(6))
    for name, arr in (("thumbs", "thumb"), ("phash", "phash"), ("desc", "desc"), ("inner", "inner")):
        assert np.shares_memory(getattr(whole, name), feats[arr]), name
    part = Views.of_index(feats, np.array([1, 3, 4]))
    assert not np.shares_memory(part.thumbs, feats["thumb"])
    assert (part.thumbs == thumbs[[1, 3, 4]]).all() and (part.desc == feats["desc"][[1, 3, 4]]).all()
    assert list(part.has_inner) == [True, True, False] and list(whole.has_inner) == [False, True] * 3
    shifted = Views.of_index(feats, np.arange(1, 6))      # contiguous but not from row 0: a copy
    assert (shifted.thumbs == thumbs[1:]).all()


def test_large_blocks_are_reused_inside_a_task_and_the_environment_restored_after(monkeypatch):
    from dsaudit.index import heap

    calls: list[tuple[int, int]] = []
    fake = {"mallopt": lambda param, value: calls.append((param, value)) or 1, "malloc_trim": lambda pad: 1}
    monkeypatch.setattr(heap, "_libc_function", lambda name: fake[name])
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    with heap.large_blocks_reused():
        pass
    assert calls == []                       # glibc adapts by itself: nothing to change
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")   # what Dask's nanny sets for its workers
    with heap.large_blocks_reused():
        inside = list(calls)
    assert inside == [(heap.M_MMAP_THRESHOLD, 32 << 20), (heap.M_TRIM_THRESHOLD, 64 << 20)]
    assert calls[2:] == [(heap.M_MMAP_THRESHOLD, heap.DEFAULT_THRESHOLD), (heap.M_TRIM_THRESHOLD, 65536)]
