"""Unit tests of the leakage building blocks: dihedral hashes, the Hamming join, verification."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagery import real_patches
from dsaudit.index import hashing, neighbors, verify


def _thumbs(n: int, seed: int = 0) -> np.ndarray:
    out = []
    for p in real_patches(4 * n, size=64, seed=seed):
        t = hashing.to_thumb(Image.fromarray(p))
        if t.std() > 15:  # grey content (some colour patches are flat in grey)
            out.append(t)
    return np.stack(out[:n])


def test_dihedral_hashes_match_transformed_thumbnails():
    th = _thumbs(12)
    ph = hashing.dihedral_phashes(th)
    for k in range(8):
        moved = np.ascontiguousarray(hashing.apply_dihedral(th, k))
        assert (hashing.dihedral_phashes(moved)[:, 0] == ph[:, k]).all()
    # distinct images are far apart
    d = np.bitwise_count(ph[:, 0][:, None] ^ ph[:, 0][None, :])
    assert d[~np.eye(len(th), dtype=bool)].min() > 8


@pytest.mark.parametrize("radius", [3, 8, 12])
def test_multi_index_join_equals_brute_force(radius):
    rng = np.random.default_rng(radius)
    ref = rng.integers(0, 2**64, size=3000, dtype=np.uint64)
    q = ref[:400].copy()
    for i in range(len(q)):
        for b in rng.choice(64, size=int(rng.integers(0, radius + 3)), replace=False):
            q[i] ^= np.uint64(1) << np.uint64(b)
    q = np.concatenate([q, rng.integers(0, 2**64, size=400, dtype=np.uint64)])
    want = set(zip(*[x.tolist() for x in neighbors.hamming_join(q, ref, radius, "brute")[:2]]))
    assert len(want) >= 250
    for m in [m for m in (2, 3, 4, 5) if radius // m <= 3]:
        got = neighbors.hamming_join(q, ref, radius, f"mih:{m}")
        pairs = list(zip(got[0].tolist(), got[1].tolist()))
        assert set(pairs) == want and len(pairs) == len(want)
        assert (np.bitwise_count(q[got[0]] ^ ref[got[1]]) == got[2]).all()


def test_knn_join_returns_the_nearest():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(200, 16)).astype(np.float32)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    qi, rj, s = neighbors.knn_join(r[:50] + 0.01, r, 1)
    assert (rj[np.argsort(qi)] == np.arange(50)).all() and (s > 0.9).all()


def test_verify_aligns_shift_and_flip_but_rejects_other_images():
    th = _thumbs(6, seed=3)
    big = np.pad(th, ((0, 0), (4, 4), (4, 4)), mode="reflect")
    shifted = big[:, 1:33, 7:39]                      # (+3, -3) pixels with real context
    flipped = th[:, :, ::-1]
    allt = np.concatenate([th, shifted, flipped]).astype(np.uint8)
    n = len(th)
    a = np.arange(n)
    v_shift = verify.verify_pairs(allt, a, a + n, np.zeros(n, int), threshold=0.9)
    v_flip = verify.verify_pairs(allt, a, a + 2 * n, np.full(n, 1), threshold=0.9)
    assert (v_shift.similarity > 0.9).all()
    assert (np.abs(v_shift.shift) == 3).all()
    assert (v_flip.similarity > 0.99).all()
    other = verify.verify_pairs(allt, a, np.roll(a, 1), np.zeros(n, int), threshold=0.9)
    assert (other.similarity < 0.8).all()
