"""DSA401-406 image quality, end to end on real PNG/JPEG files: each flag finds the images planted
with its flaw, nothing in a clean dataset, and a flaw gathered in one class is reported as a shortcut."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dsaudit.config import ContentConfig
from dsaudit.content import properties
from dsaudit.findings import Severity
from dsaudit.index import hashing
from imagery import audit_checks, real_patches, write_classes, write_image

QUALITY = ("DSA401", "DSA402", "DSA403", "DSA404", "DSA405", "DSA406")


def audit(root, select=QUALITY, **cfg):
    return audit_checks(root, select, **cfg)


def _normal_pool() -> list[np.ndarray]:
    """Well-exposed, detailed 32x32 patches of the bundled photos (the photos also hold shadows and
    flat sky, which are rightly flagged and so cannot make a clean dataset)."""
    out = []
    for p in real_patches(442, size=32, seed=3):
        img = Image.fromarray(p)
        d = dict(zip(properties.PROPERTIES, properties.measure(img.convert("L"), None, img)[0]))
        if (d["p95"] > 0.45 and d["p05"] < 0.6 and d["contrast"] > 0.06 and d["entropy"] > 4
                and d["sharpness"] > 0.8):
            out.append(p)
    return out


POOL = _normal_pool()


def normal_patches(n: int, start: int = 0) -> list[np.ndarray]:
    assert start + n <= len(POOL), len(POOL)
    return POOL[start:start + n]


def darken(p):
    return (p.astype(float) * 0.25).astype(np.uint8)


def brighten(p):
    return (255 - (255 - p.astype(float)) * 0.25).astype(np.uint8)


def blur(p):
    return np.asarray(Image.fromarray(p).filter(ImageFilter.GaussianBlur(2)))


def blank(p):
    rng = np.random.default_rng(0)
    return np.clip(np.full_like(p, 120) + rng.normal(0, 1.5, p.shape), 0, 255).astype(np.uint8)


def grey(p):
    return np.repeat(np.asarray(Image.fromarray(p).convert("L"))[:, :, None], 3, axis=2)


def clean_dataset(root, n=25):
    patches = normal_patches(2 * n)
    write_classes(root / "train", patches)
    return patches


def test_clean_real_images_raise_no_quality_flag(tmp_path):
    clean_dataset(tmp_path)
    found, ctx = audit(tmp_path)
    assert found == {}
    quality = ctx.sections["content"]["quality"]
    assert {q["flagged"] for q in quality.values()} == {0}
    assert quality["DSA403"]["histogram"]["counts"]["other"]   # the score histogram is there


@pytest.mark.parametrize("check_id, flaw", [("DSA401", darken), ("DSA402", brighten), ("DSA403", blur),
                                            ("DSA404", blank), ("DSA405", grey)])
def test_each_flag_finds_exactly_the_planted_images(tmp_path, check_id, flaw):
    patches = clean_dataset(tmp_path)
    planted = []
    for i, p in enumerate(normal_patches(4, start=60)):
        rel = f"train/a/flawed_{i}.jpg"
        write_image(tmp_path / rel, flaw(p))
        planted.append(rel)
    assert patches
    found, _ = audit(tmp_path)
    assert check_id in found, found
    f = found[check_id]
    assert sorted(f.paths) == sorted(planted)
    assert f.evidence["flagged"] == 4 and f.evidence["per_class"]["a"]["flagged"] == 4
    listed = f.evidence["images_flagged"]
    assert {e["path"] for e in listed} == set(planted) and all(f.evidence["score"] in e for e in listed)
    # the other flaws are not reported for these images (a blank one is not also "blurry")
    others = {k: v for k, v in found.items() if k != check_id}
    assert not any(set(v.paths) & set(planted) for v in others.values()), others


def test_flaw_gathered_in_one_class_is_a_shortcut_warning(tmp_path):
    patches = normal_patches(60)
    write_classes(tmp_path / "train", patches[:40])
    for i, p in enumerate(patches[40:]):   # 20 blurred images, all of class "b"
        write_image(tmp_path / "train" / "b" / f"blur_{i:03d}.png", blur(p))
    found, _ = audit(tmp_path)
    f = found["DSA403"]
    assert f.severity == Severity.WARNING and f.evidence["shortcut"]["label"] == "b"
    assert "'b'" in f.title


def test_flaw_spread_over_classes_is_no_shortcut(tmp_path):
    patches = normal_patches(60)
    write_classes(tmp_path / "train", patches[:40] + [blur(p) for p in patches[40:]])
    f = audit(tmp_path)[0]["DSA403"]
    assert f.severity == Severity.INFO and "shortcut" not in f.evidence


def test_greyscale_dataset_is_not_flagged_as_grey_in_colour(tmp_path):
    write_classes(tmp_path, normal_patches(30), transform=grey)
    found, _ = audit(tmp_path)
    assert "DSA405" not in found


def test_odd_size_and_aspect(tmp_path):
    clean_dataset(tmp_path)
    photo = real_patches(1, size=128, seed=9)[0]
    write_image(tmp_path / "train/a/large.png", photo[:96, :96])        # 96x96: 3x, within the factor 4
    write_image(tmp_path / "train/a/tiny.png", photo[::32, ::32])       # 4x4: side 8x smaller
    write_image(tmp_path / "train/b/wide.png", photo[:16, :64])         # 64x16: aspect 4
    write_image(tmp_path / "train/b/normal.png", photo[:24, :32])       # 32x24: within the factors
    f = audit(tmp_path)[0]["DSA406"]
    assert sorted(f.paths) == ["train/a/tiny.png", "train/b/wide.png"]


def test_thresholds_come_from_config(tmp_path):
    clean_dataset(tmp_path)
    found, _ = audit(tmp_path, content=ContentConfig(dark_max_p95=0.999))
    assert found["DSA401"].evidence["flagged"] == 50


def test_properties_measure_what_they_say():
    rng = np.random.default_rng(0)
    photo = normal_patches(1)[0]
    img = Image.fromarray(photo)
    props, colour = properties.measure(img.convert("L"), None, img)
    p = dict(zip(properties.PROPERTIES, props))
    g = np.asarray(img.convert("L"), dtype=float)
    assert p["brightness"] == pytest.approx(g.mean() / 255, abs=1e-4)
    assert p["contrast"] == pytest.approx(g.std() / 255, abs=1e-4)
    assert colour.shape == (8, 8, 3)
    const = Image.fromarray(np.full((40, 40, 3), 77, np.uint8))
    c = dict(zip(properties.PROPERTIES, properties.measure(const.convert("L"), None, const)[0]))
    assert c["entropy"] == 0 and c["contrast"] == 0 and c["sharpness"] == 0 and c["chroma"] == 0
    blurred = Image.fromarray(blur(photo))
    b = dict(zip(properties.PROPERTIES, properties.measure(blurred.convert("L"), None, blurred)[0]))
    assert b["sharpness"] < 0.5 * p["sharpness"]
    noise = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8))
    assert dict(zip(properties.PROPERTIES, properties.measure(noise)[0]))["entropy"] > 7.5
    # the worker's features carry them; the pixel digest from the shared array is img.tobytes()'s
    assert hashing._pixel_digest(img, np.asarray(img)) == hashing._pixel_digest(img)
    feats = hashing.extract(img)    # a 32x32 image: its grey statistics are measured in hashing.complete
    assert "grey" not in feats and "deferred" in feats and feats["colour"].shape == (8, 8, 3)
    large = Image.fromarray(np.concatenate([photo, photo], axis=1))
    assert hashing.extract(large)["grey"].shape == (len(properties.GREY),)
