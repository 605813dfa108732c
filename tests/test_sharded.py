"""The near-duplicate search on a Dask cluster (similarity/sharded.py) against the local search, on
real image files: the same matches table, cut into many tiny shards, blocks and chunks so that
every merge runs, and the same findings from a whole scan with --engine dask."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imagery import real_patches, write_image

try:
    import distributed
except ImportError:
    distributed = None
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(distributed is None, reason="needs dask[distributed] (pip install 'dsaudit[dask]')")]


def _copy(img: Image.Image, how: str) -> Image.Image:
    w, h = img.size
    return {
        "crop": lambda: img.crop((4, 3, w - 3, h - 4)).resize((w, h), Image.Resampling.BILINEAR),
        "shift": lambda: Image.fromarray(np.asarray(img)[np.clip(np.arange(h) - 4, 0, h - 1)]),
        "flip": lambda: img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "turn": lambda: img.rotate(20, resample=Image.Resampling.BILINEAR),
        "jitter": lambda: ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(1.2)).enhance(0.85),
        "pad": lambda: Image.fromarray(np.pad(np.asarray(img), ((10, 10), (10, 10), (0, 0)))),
    }[how]()


@pytest.fixture(scope="module")
def leaky(tmp_path_factory) -> Path:
    """train/{a,b} (24 photos, 3 with copies beside them), val (a copy of a train photo by each
    transform, 6 clean photos) and test (2 copies, 3 clean): cross-split, within-split, turned
    and padded copies, so that the hash join, the k-NN searches, the turned search, the inner views
    and verification all have work."""
    root = tmp_path_factory.mktemp("sharded") / "data"
    pats = real_patches(36, size=48, seed=5)
    for i in range(24):
        write_image(root / "train" / ("a" if i % 2 else "b") / f"t{i:02d}.png", pats[i])
    hows = ("crop", "shift", "flip", "turn", "jitter", "pad")
    for k, how in enumerate(hows):
        img = _copy(Image.fromarray(pats[k]), how)
        write_image(root / "val" / ("a" if k % 2 else "b") / f"{how}.jpg", np.asarray(img), quality=85)
    for k, how in enumerate(("crop", "flip", "shift")):
        img = _copy(Image.fromarray(pats[10 + k]), how)
        write_image(root / "train" / ("a" if k % 2 else "b") / f"inside_{how}.png", np.asarray(img))
    for k, how in enumerate(("jitter", "turn")):
        img = _copy(Image.fromarray(pats[16 + k]), how)
        write_image(root / "test" / "a" / f"{how}.png", np.asarray(img))
    for j in range(24, 30):
        write_image(root / "val" / "b" / f"clean{j}.png", pats[j])
    for j in range(30, 33):
        write_image(root / "test" / "b" / f"clean{j}.png", pats[j])
    return root


def _config(**kw):
    from dsaudit.config import AuditConfig

    return AuditConfig(jobs=1, cache=False, **kw)


def _search_inputs(root: Path, config):
    """The views and split codes that similarity.duplicates hands to matches_with_views."""
    from dsaudit.pipeline import build
    from dsaudit.similarity.duplicates import _split_ranks
    from dsaudit.similarity.views import Views

    index = build(root, config)
    table = index.table.reset_index(drop=True)
    img_pos = np.nonzero(table["has_features"].to_numpy(bool))[0]
    order, rank = _split_ranks(index, table["split"].astype(str).to_numpy())
    return Views.of_index(index.features, img_pos), rank[img_pos], order["train"]


LEAK = dict(knn_within_max_pairs=2e9, knn_max_pairs=5e10)
TIGHT = dict(knn_within_max_pairs=2e3, knn_max_pairs=2e3)   # both k-NN searches approximate


@pytest.mark.parametrize("budget", [LEAK, TIGHT], ids=["exact", "approximate"])
def test_cluster_search_finds_the_same_matches_as_the_local_one(leaky, client, budget):
    from dsaudit.config import LeakageConfig
    from dsaudit.similarity.matching import matches_with_views
    from dsaudit.similarity.sharded import on_cluster

    cfg = dataclasses.replace(LeakageConfig(), **budget)
    views, codes, ref = _search_inputs(leaky, _config())
    local_t: dict[str, float] = {}
    local = matches_with_views(views, codes, cfg, ref_code=ref, timings=local_t)
    # tiny pieces (shards of 12 references, blocks of 10 queries, chunks of 8 pairs): every merge runs
    with on_cluster(client=client, ref_shard=12, query_block=10, verify_chunk=8,
                    min_work={"hash_join": 0, "knn_join": 0, "verify": 0}) as search:
        remote_t: dict[str, float] = {}
        remote = matches_with_views(views, codes, cfg, ref_code=ref, timings=remote_t)
    assert search.stats["tasks"] > 30
    assert local_t["candidates"] == remote_t["candidates"] > 20
    assert local.attrs == remote.attrs
    assert set(local["source"]) >= {"hash", "knn"}       # both candidate searches found copies
    assert len(local) >= 6
    assert local.equals(remote), (local.compare(remote) if local.shape == remote.shape else (local, remote))
    if budget is TIGHT:
        assert set(local.attrs["approximate"]) >= {"across"}


def _findings(result) -> list[tuple]:
    return sorted((f.check_id, str(f.severity), tuple(sorted(f.paths)), f.subject, f.title)
                  for f in result.findings)


def test_dask_scan_searches_on_the_cluster_with_the_same_findings(leaky, cluster, client, monkeypatch):
    from dsaudit.pipeline import scan
    from dsaudit.similarity import sharded

    # every step on the cluster, however small (by default a small one stays in the client)
    monkeypatch.setattr(sharded, "MIN_WORK", {"hash_join": 0, "knn_join": 0, "verify": 0})
    local = scan(leaky, _config(engine="local"))
    with distributed.get_task_stream(client=client) as stream:
        remote = scan(leaky, _config(engine="dask", scheduler=cluster.scheduler_address))
    names = {t["key"][0] if isinstance(t["key"], tuple) else str(t["key"]) for t in stream.data}
    for step in ("_hash_task", "_knn_task", "_knn_merge", "_verify_task"):
        assert any(step in name for name in names), (step, sorted(names)[:10])
    assert _findings(local) == _findings(remote)
    near = [f for f in local.findings if f.check_id in ("DSA202", "DSA204")]
    assert near, _findings(local)                            # the copies really are found
    leaked = {p for f in near for p in f.paths}
    assert {"val/a/shift.jpg", "val/b/flip.jpg", "val/a/pad.jpg", "test/a/jitter.png"} <= leaked
