"""Copies made the way augmentation recipes make them (turned by tens of degrees, mirrored, shifted,
zoomed, re-coloured, saved at another size), written as real files and found by a scan.

The transforms are deterministic numpy/scipy re-implementations of each library's combined
transform, so the tests need neither torchvision nor albumentations: Keras ImageDataGenerator's
affine map about the centre with its fill modes (nearest, reflect, wrap, constant), Keras'
preprocessing layers (flip, rotation, zoom, translation with reflect fill, contrast), torchvision's
RandomResizedCrop + horizontal flip + colour jitter, albumentations' ShiftScaleRotate (reflect-101
border) + horizontal flip + brightness/contrast. benchmarks/augment_recipes.py runs the real
libraries on CIFAR-10 and COVID-CT.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from dsaudit.config import AuditConfig, ProbeConfig
from dsaudit.pipeline import scan
from imagery import real_patches, write_image

FILL = {"nearest": "nearest", "reflect": "reflect", "wrap": "grid-wrap", "constant": "constant",
        "reflect101": "mirror"}


def affine_copy(img: np.ndarray, angle: float = 0.0, zoom: tuple[float, float] = (1.0, 1.0),
                shift: tuple[float, float] = (0.0, 0.0), hflip: bool = False, vflip: bool = False,
                fill: str = "nearest") -> np.ndarray:
    """ImageDataGenerator.apply_transform's geometry: rotate by `angle` degrees and zoom about the
    centre, shift by (rows, cols) pixels, fill outside with `fill`, then flip."""
    h, w = img.shape[:2]
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m = rot @ np.diag([1.0 / zoom[0], 1.0 / zoom[1]])
    c = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    off = c - m @ c + np.asarray(shift)
    out = np.stack([ndimage.affine_transform(img[..., k].astype(np.float32), m, off, order=1,
                                             mode=FILL[fill], cval=0.0) for k in range(img.shape[2])], axis=-1)
    if hflip:
        out = out[:, ::-1]
    if vflip:
        out = out[::-1]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def colour(img: np.ndarray, brightness: float = 1.0, contrast: float = 1.0, saturation: float = 1.0) -> np.ndarray:
    """torchvision's ColorJitter / albumentations' RandomBrightnessContrast factors, in that order."""
    x = img.astype(np.float32) * brightness
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey.mean()) * contrast + grey.mean()
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * saturation
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def resized_crop(img: np.ndarray, box: tuple[int, int, int, int], size: int, hflip: bool) -> np.ndarray:
    """RandomResizedCrop's crop (left, top, right, bottom) resized to size x size, then the flip."""
    out = np.asarray(Image.fromarray(img).crop(box).resize((size, size), Image.Resampling.BILINEAR))
    return out[:, ::-1] if hflip else out


def upscale(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


# (family, how the copy is made from a 32-px source); each drawn as its recipe draws it: a turn of
# tens of degrees, mirrored or not, shifted and zoomed, some re-coloured, some saved larger
RECIPES = {
    "idg-nearest": lambda x: affine_copy(x, 33, (1.08, 0.95), (2.0, -1.5), hflip=True),
    "idg-reflect": lambda x: affine_copy(x, -28, (0.93, 1.05), (-1.5, 2.0), fill="reflect"),
    "idg-wrap": lambda x: affine_copy(x, 18, (1.05, 1.05), (1.0, 1.0), hflip=True, fill="wrap"),
    "idg-constant": lambda x: affine_copy(x, -36, (1.1, 1.1), (0.0, 1.0), fill="constant"),
    "idg-medical": lambda x: colour(affine_copy(upscale(x, 128), 47, (1.0, 1.0), (6.0, -4.0), vflip=True), 1.06),
    "keras-layers": lambda x: colour(affine_copy(x, -41, (1.07, 1.07), (1.0, -1.0), hflip=True, fill="reflect"),
                                     contrast=1.15),
    "torchvision": lambda x: colour(resized_crop(x, (2, 3, 30, 31), 160, hflip=True), 1.1, 0.9, 1.15),
    "albumentations": lambda x: colour(affine_copy(upscale(x, 128), 22, (1.06, 1.06), (-5.0, 4.0), hflip=True,
                                                   fill="reflect101"), 1.08, 1.1),
}


@pytest.fixture(scope="module")
def recipe_scan(tmp_path_factory):
    """train/val of 32-px photo patches; per recipe one copy of a val image written into train
    (cross-split) and one of a train image next to it (in-split); clean val images besides."""
    root = tmp_path_factory.mktemp("recipes")
    patches = real_patches(150, size=32, seed=3)
    train, val_src, clean = patches[:80], patches[80:80 + len(RECIPES)], patches[80 + len(RECIPES):]
    for i, p in enumerate(train):
        write_image(root / "train" / f"c{i % 2}" / f"t{i:03d}.png", p)
    for i, p in enumerate(val_src):
        write_image(root / "val" / f"c{i % 2}" / f"s{i:03d}.png", p)
    for i, p in enumerate(clean):
        write_image(root / "val" / f"c{i % 2}" / f"clean{i:03d}.jpg", p)
    planted = {}
    for k, (name, make) in enumerate(RECIPES.items()):
        cross = f"train/c{k % 2}/aug_{name}_cross.png"
        write_image(root / cross, make(val_src[k]))
        inside = f"train/c{k % 2}/aug_{name}_in.jpg"
        write_image(root / inside, make(train[k]))
        planted[name] = ((f"val/c{k % 2}/s{k:03d}.png", cross), (f"train/c{k % 2}/t{k:03d}.png", inside))
    cfg = AuditConfig(jobs=1, cache=False, probe=dataclasses.replace(ProbeConfig(), mode="off"))
    result = scan(root, cfg)
    return result, planted, [f"val/c{i % 2}/clean{i:03d}.jpg" for i in range(len(clean))]


def _together(result, check: str, a: str, b: str) -> bool:
    for f in result.findings:
        if f.check_id != check:
            continue
        groups = f.evidence.get("clusters") if check == "DSA204" else [f.paths]
        if any(a in g and b in g for g in groups or []):
            return True
    return False


# Copies the matcher does not find yet (matcher 19; benchmarks/augment_recipes.py measures the
# rates). Strict: when one starts to be found, the test says so and the mark comes off. Since the
# frame search (similarity/canonical.py) every one of them has its source as its nearest
# candidate, with the right mirror and a turn within 5 degrees; verification's cascade stops
# them short (0.36-0.93 against the 0.94 bar) where its full search (threshold 1.01, no
# prefilter) confirms three of them at 0.92-0.997; black (constant) fill stays out of reach.
MISSED = pytest.mark.xfail(strict=True, reason="the source is the nearest candidate, but verification "
                           "does not confirm it from the frame's turn (cascade gates, black fill)")
CROSS = [pytest.param(n, marks=MISSED) if n in ("idg-constant", "idg-medical") else n for n in RECIPES]
INSIDE = [pytest.param(n, marks=MISSED) if n in ("idg-nearest", "idg-medical", "albumentations") else n
          for n in RECIPES]


@pytest.mark.parametrize("name", CROSS)
def test_a_recipe_made_copy_of_a_val_image_in_train_is_a_leak(recipe_scan, name):
    result, planted, _ = recipe_scan
    source, copy = planted[name][0]
    assert _together(result, "DSA202", source, copy), name


@pytest.mark.parametrize("name", INSIDE)
def test_a_recipe_made_copy_inside_train_is_a_duplicate_cluster(recipe_scan, name):
    result, planted, _ = recipe_scan
    source, copy = planted[name][1]
    assert _together(result, "DSA204", source, copy), name


def test_clean_val_images_are_not_flagged_and_the_transform_is_reported(recipe_scan):
    result, planted, clean = recipe_scan
    flagged = {p for f in result.findings if f.check_id in ("DSA201", "DSA202", "DSA203") for p in f.paths}
    assert not flagged & set(clean)
    # the evidence says how the copy was turned and mirrored
    pairs = [p for f in result.findings if f.check_id == "DSA202" for p in f.evidence["pairs"]]
    source, copy = planted["idg-nearest"][0]
    pair = next(p for p in pairs if {p["a"], p["b"]} == {source, copy})
    assert "rotate" in pair["transform"] and "flip" in pair["transform"], pair


# --- the frame search (similarity/canonical.py) on its own: real photo patches, copies turned by any
# angle and mirrored either way, as arrays (no scan)

def _grey_thumbs(patches: list[np.ndarray]) -> np.ndarray:
    from dsaudit.index.hashing import to_thumb

    return np.stack([to_thumb(Image.fromarray(p)) for p in patches])


def test_a_turned_copy_turns_its_frame_with_it():
    from dsaudit.similarity.canonical import orientations
    from dsaudit.similarity.verify import turn_one_by_one

    thumbs = _grey_thumbs(real_patches(60, size=32, seed=5)).astype(np.float32)
    angles = np.random.default_rng(0).uniform(-180, 180, len(thumbs))
    turned = turn_one_by_one(thumbs, angles)
    before, after = orientations(thumbs, 1)[:, 0], orientations(turned, 1)[:, 0]
    # the dominant orientation moves with the turn (what the fit cannot reach, 15 degrees, is rare)
    err = np.abs((after - before - angles + 180.0) % 360.0 - 180.0)
    assert np.mean(err <= 15.0) >= 0.9, np.round(err)


def test_the_frame_search_finds_copies_at_any_angle_mirrored_either_way():
    from dsaudit.index.hashing import apply_dihedral
    from dsaudit.similarity.canonical import frame_candidates
    from dsaudit.similarity.verify import turn_one_by_one
    from dsaudit.similarity.matching import Whitening
    from dsaudit.similarity.verify import verify_pairs

    refs = _grey_thumbs(real_patches(120, size=32, seed=7))
    rng = np.random.default_rng(1)
    n = 30
    angles = rng.uniform(-180, 180, n)           # any angle; a vertical flip is a mirror turned by 180
    copies = turn_one_by_one(refs[:n].astype(np.float32), angles)
    mirrored = rng.random(n) < 0.5
    copies[mirrored] = apply_dihedral(copies[mirrored], 1)[...]
    thumbs = np.concatenate([refs, np.clip(np.rint(copies), 0, 255).astype(np.uint8)])
    queries = np.arange(len(refs), len(thumbs))
    r, q, turn, mir = frame_candidates(thumbs, np.arange(len(refs)), queries, 3, 0.3, 0.05, Whitening.fit)
    hit = r == q - len(refs)
    assert len(set(q[hit])) >= 0.9 * n
    # the pair carries the mirror and the turn that verification starts from, and it confirms them
    assert (mir[hit] == mirrored[q[hit] - len(refs)]).all()
    ver = verify_pairs(thumbs, r[hit], q[hit], np.where(mir[hit], 1, 0), threshold=0.9, search_threshold=0.94,
                       turn=turn[hit], turned=np.ones(hit.sum(), bool))
    assert np.mean(ver.similarity >= 0.94) >= 0.85, np.round(ver.similarity, 2)
    # an image is never its own candidate, and unrelated patches are not confirmed from their frames
    r2, q2, t2, m2 = frame_candidates(thumbs[:len(refs)], np.arange(60), np.arange(60, len(refs)), 3, 0.3, 0.05,
                                      Whitening.fit)
    assert len(r2) and (r2 != q2).all()
    ver2 = verify_pairs(thumbs, r2, q2, np.where(m2, 1, 0), threshold=0.9, search_threshold=0.94,
                        turn=t2, turned=np.ones(len(r2), bool), min_isotropy=0.55)
    assert np.mean(ver2.similarity >= 0.94) <= 0.02


def test_the_frame_search_in_chunks_finds_what_one_pass_finds(monkeypatch):
    """Images and queries go in chunks (canonical.CHUNK, QUERY_CHUNK) so that a large split's
    frame search stays in cache and memory: the chunks must give what one pass gives."""
    from dsaudit.similarity import canonical
    from dsaudit.similarity.matching import Whitening

    thumbs = _grey_thumbs(real_patches(90, size=32, seed=11))
    refs, queries = np.arange(60), np.arange(30, 90)     # overlapping: an image is never its own candidate

    def search():
        return canonical.frame_candidates(thumbs, refs, queries, 3, 0.3, 0.05, Whitening.fit)

    whole = search()
    monkeypatch.setattr(canonical, "CHUNK", 7)
    monkeypatch.setattr(canonical, "QUERY_CHUNK", 11)
    chunked = search()
    assert len(whole[0]) > len(queries)

    def key(out):
        return sorted(zip(out[1].tolist(), out[0].tolist(), np.round(out[2], 3).tolist(), out[3].tolist()))

    assert key(chunked) == key(whole)
