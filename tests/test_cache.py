"""The record cache: a rescan of an unchanged dataset decodes nothing; changes are picked up."""

import dataclasses

import numpy as np
from PIL import Image

from dsaudit.config import AuditConfig
from dsaudit.pipeline import scan
from imagery import make_split_dataset, real_patches, write_image

CFG = AuditConfig(jobs=1, select=("DSA0*",))


def test_rescan_decodes_nothing_and_gives_the_same_findings(tmp_path):
    make_split_dataset(tmp_path / "d", {"train": {"a": 5, "b": 5}}, size=32)
    (tmp_path / "d" / "train" / "a" / "empty.png").write_bytes(b"")
    first = scan(tmp_path / "d", CFG)
    second = scan(tmp_path / "d", CFG)
    assert first.summary["cache"] == {"hits": 0, "misses": 11}
    assert second.summary["cache"] == {"hits": 11, "misses": 0}
    assert [f.to_dict() for f in first.findings] == [f.to_dict() for f in second.findings]


def test_changed_file_is_decoded_again(tmp_path):
    files = make_split_dataset(tmp_path / "d", {"train": {"a": 4}}, size=32)
    scan(tmp_path / "d", CFG)
    victim = files["train"]["a"][0]
    victim.write_bytes(b"")  # same path, new size and mtime
    result = scan(tmp_path / "d", CFG)
    assert result.summary["cache"] == {"hits": 3, "misses": 1}
    assert [f.check_id for f in result.findings] == ["DSA003"]


def test_no_cache_decodes_everything_and_writes_no_cache(tmp_path, monkeypatch):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("DSAUDIT_CACHE_DIR", str(cache_dir))
    make_split_dataset(tmp_path / "d", {"train": {"a": 3}}, size=32)
    result = scan(tmp_path / "d", dataclasses.replace(CFG, cache=False))
    assert result.summary["cache"] == {"hits": 0, "misses": 3}
    assert not cache_dir.exists()
    scan(tmp_path / "d", CFG)
    assert list(cache_dir.glob("*.sqlite"))


def test_unwritable_cache_folder_does_not_stop_a_scan(tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    monkeypatch.setenv("DSAUDIT_CACHE_DIR", str(blocker / "cache"))
    make_split_dataset(tmp_path / "d", {"train": {"a": 2}}, size=32)
    assert scan(tmp_path / "d", CFG).summary["images"] == 2


def test_rescan_reuses_memoised_results_and_recomputes_when_data_changes(tmp_path):
    from dsaudit.pipeline import build

    files = make_split_dataset(tmp_path / "d", {"train": {"a": 3}, "val": {"a": 2}}, size=32)
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    first = build(tmp_path / "d", CFG)
    assert first.memoize("demo", "v1", compute) == 1
    again = build(tmp_path / "d", CFG)
    assert again.fingerprint == first.fingerprint
    assert again.memoize("demo", "v1", compute) == 1 and len(calls) == 1  # reused
    assert again.memoize("demo", "v2", compute) == 2                       # new settings: recomputed
    write_image(files["val"]["a"][0], real_patches(1, 32, seed=99)[0])     # new content
    changed = build(tmp_path / "d", CFG)
    assert changed.fingerprint != first.fingerprint
    assert changed.memoize("demo", "v2", compute) == 3
    uncached = build(tmp_path / "d", dataclasses.replace(CFG, cache=False))
    assert uncached.memoize("demo", "v2", compute) == 4                    # no cache, no memo


def test_rescan_does_not_search_for_near_duplicates_again(tmp_path, monkeypatch):
    from dsaudit.similarity import matching as leakage

    files = make_split_dataset(tmp_path / "d", {"train": {"a": 4}, "val": {"a": 2}}, size=32)
    write_image(tmp_path / "d" / "val" / "a" / "copy.jpg", np.asarray(Image.open(files["train"]["a"][0])))
    calls = []
    real = leakage.near_matches
    monkeypatch.setattr(leakage, "near_matches", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = dataclasses.replace(CFG, select=("DSA2*",))
    first = scan(tmp_path / "d", cfg)
    second = scan(tmp_path / "d", cfg)
    assert len(calls) == 1
    assert [f.to_dict() for f in first.findings] == [f.to_dict() for f in second.findings]
    assert any(f.check_id == "DSA202" for f in second.findings)
    scan(tmp_path / "d", dataclasses.replace(cfg, leakage=dataclasses.replace(cfg.leakage, near_threshold=6)))
    assert len(calls) == 2  # other settings: searched again


def test_a_cache_folder_inside_the_dataset_is_not_written(tmp_path, monkeypatch):
    """Wherever the cache folder comes from (--cache-dir, DSAUDIT_CACHE_DIR, XDG_CACHE_HOME, HOME),
    a scan never writes into the dataset: inside it, the scan runs without a cache and says so."""
    from imagery import tree_snapshot

    make_split_dataset(tmp_path / "d", {"train": {"a": 3}, "val": {"a": 3}}, size=32)
    monkeypatch.delenv("DSAUDIT_CACHE_DIR", raising=False)
    before = tree_snapshot(tmp_path / "d")
    notes: list[str] = []
    cases = [({"cache_dir": str(tmp_path / "d" / "cache")}, {}),
             ({}, {"DSAUDIT_CACHE_DIR": str(tmp_path / "d" / "train" / ".c")}),
             ({}, {"XDG_CACHE_HOME": str(tmp_path / "d")}),
             ({}, {"HOME": str(tmp_path / "d"), "XDG_CACHE_HOME": ""})]
    for cfg, env in cases:
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v) if v else m.delenv(k, raising=False)
            result = scan(tmp_path / "d", dataclasses.replace(CFG, **cfg), notify=notes.append)
        assert result.summary["cache"] == {"hits": 0, "misses": 6}
        assert "inside the dataset" in result.meta["notes"][0]
    assert tree_snapshot(tmp_path / "d") == before
    assert len(notes) == len(cases) and all("scanning without a cache" in n for n in notes)


def test_each_file_is_stated_once_per_scan(tmp_path, monkeypatch):
    """The index keys the cache on one stat per file and hands its size to the decode, which
    does not stat the file again (os.stat counted in this process: jobs=1 decodes here)."""
    import os

    from dsaudit.index import io as dsio

    make_split_dataset(tmp_path / "d", {"train": {"a": 4, "b": 4}}, size=32)
    (tmp_path / "d" / "train" / "a" / "empty.png").write_bytes(b"")
    seen: list[str] = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):
        if str(path).endswith(".png"):
            seen.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(dsio.os, "stat", counting_stat)
    result = scan(tmp_path / "d", dataclasses.replace(CFG, cache=False, jobs=1))
    assert result.summary["cache"]["misses"] == 9
    assert len(seen) == 9 and len(set(seen)) == 9, seen
    assert [f.check_id for f in result.findings] == ["DSA003"]   # the empty file is still found
