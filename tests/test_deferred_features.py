"""Images that are their own 32x32 thumbnail leave their borders, inner view and grey properties to
hashing.complete, which measures them for all such images at once: it must give exactly what the
one-image path (hashing.thumbnails, properties.measure) gives, on real photo patches, padded ones
and crafted borders, and the index built from real files must carry them."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dsaudit.config import AuditConfig
from dsaudit.content import properties
from dsaudit.index import hashing
from dsaudit.pipeline import build
from imagery import real_patches, write_image


def _crafted(n: int, seed: int = 0) -> np.ndarray:
    """32x32 grey images with flat bands of random widths and colours on random sides, noisy or
    flat, some blank: the cases flat_borders decides."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = rng.integers(0, 256, (32, 32)).astype(np.uint8)
        if k % 2:
            a[:rng.integers(0, 20)] = rng.integers(0, 256)
        if k % 3 == 0:
            a[:, :rng.integers(0, 20)] = rng.integers(0, 256)
        if k % 5 == 0:
            a[32 - rng.integers(1, 20):] = rng.integers(0, 256)
        if k % 7 == 0:
            a = (a // 40 + 100).astype(np.uint8)
        if k % 11 == 0:
            a[:] = rng.integers(0, 256)
        if k % 13 == 0:
            a[:, 32 - rng.integers(1, 25):] = rng.integers(0, 3, (32, 1)) + 50
        out.append(a)
    return np.stack(out)


def test_batch_flat_borders_equal_the_one_image_path():
    imgs = _crafted(1500)
    got = hashing.flat_borders_batch(imgs)
    want = np.array([hashing.flat_borders(a) for a in imgs])
    assert (want.any(axis=1)).sum() > 300          # many have a border, many do not
    assert (got == want).all()


def _padded(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 32x32 RGB photo patch shrunk into a flat border of random colour and widths."""
    top, bottom, left, right = (int(v) for v in rng.integers(0, 7, 4))
    inner = Image.fromarray(patch).resize((32 - left - right, 32 - top - bottom))
    canvas = np.full((32, 32, 3), rng.integers(0, 256), np.uint8)
    canvas[top:32 - bottom, left:32 - right] = np.asarray(inner)
    return canvas


def test_complete_equals_thumbnails_and_measure_on_real_patches():
    rng = np.random.default_rng(1)
    patches = real_patches(120, size=32, seed=2)
    images = [Image.fromarray(p) for p in patches] + [Image.fromarray(_padded(p, rng)) for p in patches[:80]]
    images.append(Image.fromarray(np.full((32, 32), 90, np.uint8)))       # a blank grey image
    extracted = [hashing.extract(img) for img in images]
    assert all("deferred" in f and "grey" not in f and "border" not in f for f in extracted)
    feats = hashing.stack_features([hashing.encode_features(f) for f in extracted])
    hashing.apply_completed(feats, hashing.complete(feats, chunk=64))   # several chunks
    with_inner = 0
    for k, img in enumerate(images):
        thumb, inner, box = hashing.thumbnails(img)
        assert (feats["thumb"][k] == thumb).all()
        assert tuple(feats["border"][k]) == box
        if inner is None:
            assert not feats["inner"][k].any()
        else:
            with_inner += 1
            assert (feats["inner"][k] == inner).all()
        props, colour = properties.measure(img.convert("L"), None, img.convert("RGB") if img.mode == "RGB" else None)
        assert (feats["colour"][k] == colour).all()
        assert (feats["props"][k] == props).all(), k
    assert with_inner >= 40


def test_index_of_mixed_sizes_completes_every_image(tmp_path):
    """A 32x32 JPEG (deferred) and a 64x64 PNG (measured in the worker) in one index: both have
    their properties; the padded 32-px one has its inner view, as the one-image path says."""
    rng = np.random.default_rng(3)
    small = real_patches(3, size=32, seed=4)
    large = real_patches(2, size=64, seed=5)
    write_image(tmp_path / "train/a/small0.png", small[0])
    write_image(tmp_path / "train/a/padded.png", _padded(small[1], rng))
    write_image(tmp_path / "train/b/small2.jpg", small[2])
    write_image(tmp_path / "train/b/large0.png", large[0])
    write_image(tmp_path / "train/b/large1.jpg", large[1])
    index = build(tmp_path, AuditConfig(jobs=1, cache=False))
    rows = {p: i for i, p in enumerate(index.table["path"])}
    for path, i in rows.items():
        img = Image.open(tmp_path / path)
        img.load()
        props, _ = properties.measure(img.convert("L"), None, img.convert("RGB"))
        assert np.allclose(index.features["props"][i], props, atol=1e-6), path
        _, inner, box = hashing.thumbnails(img)
        assert tuple(index.features["border"][i]) == box, path
        if inner is not None:
            assert (index.features["inner"][i] == inner).all()
    assert index.features["border"][rows["train/a/padded.png"]].any()
