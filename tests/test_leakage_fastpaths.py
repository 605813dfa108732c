"""The fast paths of the leakage search give the same answers as the plain computations:
probing the smaller side of a Hamming join, the blocked k-NN with a per-query floor, and the
thread pools of finalize / verification (results must not depend on the number of threads)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imagery import real_patches
from dsaudit.index import hashing
from dsaudit.similarity import neighbors, verify


def _thumbs(n: int, seed: int = 0) -> np.ndarray:
    out = [hashing.to_thumb(Image.fromarray(p)) for p in real_patches(2 * n, size=48, seed=seed)]
    return np.stack([t for t in out if t.std() > 10][:n])


@pytest.mark.parametrize("m", [3, 4])
def test_join_probing_the_smaller_side_equals_brute_force(m):
    rng = np.random.default_rng(m)
    ref = rng.integers(0, 2**64, size=600, dtype=np.uint64)
    q = np.repeat(ref, 4)  # more queries than references: the references become the probes
    for i in range(len(q)):
        for b in rng.choice(64, size=int(rng.integers(0, 11)), replace=False):
            q[i] ^= np.uint64(1) << np.uint64(b)
    want = set(zip(*[x.tolist() for x in neighbors.hamming_join(q, ref, 8, "brute")[:2]]))
    assert len(want) > 1000
    qi, rj, d = neighbors.hamming_join(q, ref, 8, f"mih:{m}")
    assert set(zip(qi.tolist(), rj.tolist())) == want and len(qi) == len(want)
    assert (np.bitwise_count(q[qi] ^ ref[rj]) == d).all()


@pytest.mark.parametrize("min_sim", [-1.0, 0.7])
def test_blocked_knn_equals_dense_ranking(min_sim):
    rng = np.random.default_rng(1)
    r = rng.normal(size=(1500, 16)).astype(np.float32)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    q = r[rng.choice(len(r), 200)] + rng.normal(scale=0.5, size=(3, 200, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=2, keepdims=True)
    dense = np.max([qv @ r.T for qv in q], axis=0)
    top = np.argsort(-dense, axis=1)[:, :5]
    want = {(i, int(j)) for i in range(200) for j in top[i] if dense[i, j] >= min_sim}
    qi, rj, s = neighbors.knn_join(q, r, 5, min_sim=min_sim, query_block=64, ref_block=256, sample_step=4)
    assert set(zip(qi.tolist(), rj.tolist())) == want and len(qi) == len(want)
    assert np.allclose(s, dense[qi, rj], atol=1e-5)
    assert min_sim < 0 or len(want) < 5 * 200  # the similarity floor did remove some


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    th = _thumbs(40, seed=5)
    shifted = np.roll(th, 2, axis=2)
    allt = np.concatenate([th, shifted, th[:, ::-1]]).astype(np.uint8)
    n = len(th)
    a = np.concatenate([np.arange(n), np.arange(n), np.arange(n)])
    b = np.concatenate([np.arange(n) + n, np.arange(n) + 2 * n, np.roll(np.arange(n), 1)])
    v = np.concatenate([np.zeros(n, int), np.full(n, 2), np.zeros(n, int)])
    out = {}
    for threads in ("1", "2"):
        monkeypatch.setenv("DSAUDIT_THREADS", threads)
        fin = hashing.finalize({"thumb": allt}, chunk=16)
        ver = verify.verify_pairs(allt, a, b, v, threshold=0.9, batch=16)
        out[threads] = (fin, ver)
    (f1, v1), (f2, v2) = out["1"], out["2"]
    for k in f1:
        assert np.array_equal(f1[k], f2[k])
    one_chunk = hashing.finalize({"thumb": allt}, chunk=4096)
    for k in f1:
        assert np.array_equal(f1[k], one_chunk[k])
    for field in ("similarity", "shift", "zoom", "angle", "stage"):
        assert np.array_equal(getattr(v1, field), getattr(v2, field))
    assert (v1.similarity[n:2 * n] > 0.99).all()             # flipped copies match
    assert (v1.similarity[:n] > 0.9).mean() > 0.8            # rolled copies mostly do
    assert (v1.similarity[2 * n:] < 0.9).mean() > 0.9   # neighbours in the list mostly do not


def test_a_query_shared_by_many_pairs_gives_each_pair_its_own_answer():
    """verify_pairs computes the query side once per distinct (image, orientation) of a batch and
    sorts the pairs by query: every pair must still get what it gets when verified alone, in any
    order, whatever the orientations of the other pairs of its query."""
    th = _thumbs(12, seed=7)
    n = len(th)
    copies = np.stack([np.roll(th[i], (i % 3) - 1, axis=1) for i in range(n)])
    allt = np.concatenate([th, hashing.apply_dihedral(copies, 1), copies]).astype(np.uint8)
    rng = np.random.default_rng(0)
    a, b, v = [], [], []
    for q in range(n):   # each query: its source in two orientations (one right) and unrelated references
        for ref, query, var in ((q, n + q, 1), (q, n + q, 0), (q, 2 * n + q, 0), ((q + 1) % n, 2 * n + q, 0),
                                ((q + 5) % n, n + q, 1)):
            a.append(ref)
            b.append(query)
            v.append(var)
    a, b, v = (np.array(x) for x in (a, b, v))
    order = rng.permutation(len(a))
    a, b, v = a[order], b[order], v[order]
    together = verify.verify_pairs(allt, a, b, v, threshold=0.9, search_threshold=0.94, batch=16)
    for i in range(len(a)):
        alone = verify.verify_pairs(allt, a[i:i + 1], b[i:i + 1], v[i:i + 1], threshold=0.9, search_threshold=0.94)
        for field in ("similarity", "shift", "zoom", "angle", "stage", "rms", "contrast", "isotropy"):
            assert np.allclose(getattr(together, field)[i], getattr(alone, field)[0], atol=1e-5), (i, field)
    right = (a == b % n) & (v == np.where(b < 2 * n, 1, 0))
    assert (together.similarity[right] > 0.9).all() and (together.similarity[~right] < 0.9).mean() > 0.8


def test_skipping_undecidable_searches_changes_no_match(monkeypatch):
    """verify_pairs skips the shift/search stages for pairs that the aperture rule or the
    smooth-image rule could never confirm from them; near_matches must report the same pairs as
    with every stage run. Mixed data: textured patches and their shifted copies, single-edge
    images, and smooth upscaled digits with shifted copies."""
    from sklearn.datasets import load_digits

    from dsaudit.similarity import matching as leakage
    from dsaudit.config import LeakageConfig
    from dsaudit.similarity.views import Views

    tex = _thumbs(40, seed=5)
    big = np.pad(tex, ((0, 0), (3, 3), (3, 3)), mode="reflect")
    shifted = big[:, 1:33, 5:37]
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    edges = np.stack([np.clip(100 + 60 * np.tanh((xx - 12 - k - 0.2 * yy) / 2.5), 0, 255) for k in range(10)])
    digits = load_digits().images[:60]
    smooth = np.stack([np.asarray(Image.fromarray((255 - d * 15).astype(np.uint8)).resize((32, 32),
                                                                                     Image.Resampling.BICUBIC))
                       for d in digits])
    smooth_shift = np.roll(smooth[:30], 2, axis=2)
    thumbs = np.concatenate([tex, edges, smooth, shifted, edges[:, :, ::-1][:, ::-1], smooth_shift]).astype(np.uint8)
    n_ref = len(tex) + len(edges) + len(smooth)
    codes = np.r_[np.zeros(n_ref, int), np.ones(len(thumbs) - n_ref, int)]
    feats = hashing.finalize({"thumb": thumbs})

    def run():
        m = leakage.near_matches(Views(thumbs, feats["phash"], feats["desc"], feats["smooth"]), codes,
                                 LeakageConfig())
        return sorted(zip(m["a"].tolist(), m["b"].tolist()))

    fast = run()
    from dsaudit.similarity.ops import SearchOps, using_ops
    from dsaudit.similarity.verify import verify_pairs as plain_verify

    def every_stage(*args, **kw):
        kw.pop("boost", None)
        kw.pop("min_isotropy", None)
        return plain_verify(*args, **kw)

    with using_ops(SearchOps(verify=every_stage)):   # the search's verification step, replaced
        assert run() == fast
    assert len(fast) >= 30     # the shifted textured copies are found either way


def test_a_boosted_pair_between_the_bars_goes_on_to_the_shift_search():
    """The smooth-image boost raises a pair's bar; a pair whose zero-shift similarity clears the
    plain bar but not the boosted one is not confirmed, so verification must go on and align it
    (it used to stop at the plain bar, and such copies of smooth images were lost)."""
    tex = _thumbs(60, seed=3).astype(np.float32)
    soft = np.stack([np.asarray(Image.fromarray(t.astype(np.uint8)).resize((16, 16)).resize((32, 32),
                                                                          Image.Resampling.BICUBIC))
                     for t in tex]).astype(np.float32)
    big = np.pad(soft, ((0, 0), (2, 2), (2, 2)), mode="reflect")
    moved = big[:, 2:34, 3:35]     # one pixel to the side
    thumbs = np.concatenate([soft, moved]).astype(np.uint8)
    n = len(soft)
    a, b, v = np.arange(n), np.arange(n) + n, np.zeros(n, int)
    plain = verify.verify_pairs(thumbs, a, b, v, threshold=0.5)
    band = np.nonzero((plain.stage == 0) & (plain.similarity >= 0.90) & (plain.similarity < 0.955))[0]
    assert len(band) >= 3, "test data must hold pairs between the plain and the boosted bar"
    boosted = verify.verify_pairs(thumbs, a[band], b[band], v[band], threshold=0.90, search_threshold=0.94,
                                  boost=np.full(len(band), 0.06, np.float32))
    assert (boosted.stage >= 1).all()
    assert (boosted.similarity >= 0.96).all()
