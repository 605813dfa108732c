"""Real images for tests, made without any download.

Patches are cut from scikit-learn's two bundled photographs (china.jpg, flower.jpg) on a coarse grid,
so they are natural images (textures, edges, gradients) and distinct from one another, which is what
duplicate and leakage tests need. Writers produce real PNG/JPEG files with Pillow.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image


@lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(np.asarray(img, dtype=np.uint8) for img in load_sample_images().images)


def real_patches(n: int, size: int = 64, seed: int = 0, stride: int | None = None) -> list[np.ndarray]:
    """`n` distinct RGB patches of `size` x `size` from the bundled photos (deterministic).

    Patches come from non-overlapping grid cells, shuffled with `seed`; at size 64 there are about
    120 cells, at size 32 about 500. Flat cells (sky) are skipped so that every patch has content."""
    stride = stride or size
    cells = []
    for p, photo in enumerate(_photos()):
        h, w = photo.shape[:2]
        for y in range(0, h - size + 1, stride):
            for x in range(0, w - size + 1, stride):
                patch = photo[y:y + size, x:x + size]
                if patch.std() > 12:
                    cells.append(patch)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(cells))
    if n > len(cells):
        raise ValueError(f"only {len(cells)} distinct patches of size {size} are available")
    return [cells[i].copy() for i in order[:n]]


def write_image(path: str | os.PathLike, array: np.ndarray, fmt: str | None = None,
                mode: str | None = None, quality: int = 92) -> Path:
    """Write `array` (HxW or HxWx3 uint8) as a real image file; format from `fmt` or the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(array, dtype=np.uint8))
    if mode:
        img = img.convert(mode)
    fmt = fmt or {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP",
                  ".gif": "GIF", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), "PNG")
    kwargs = {"quality": quality} if fmt == "JPEG" else {}
    if fmt == "JPEG" and img.mode not in ("L", "RGB", "CMYK"):
        img = img.convert("RGB")
    img.save(path, format=fmt, **kwargs)
    return path


def write_classes(folder: Path, patches, name: str = "img", transform=None, fmt: str = "png") -> list[Path]:
    """Write `patches` (through `transform`, if given) as FOLDER/<a|b>/NAME_XXX.fmt, alternating
    between the two classes "b" and "a": the two-class split the content tests build."""
    return [write_image(folder / ("a" if i % 2 else "b") / f"{name}_{i:03d}.{fmt}", transform(p) if transform else p)
            for i, p in enumerate(patches)]


def audit_checks(root: Path, select, **cfg):
    """Build the index of ROOT and run the checks `select` on one core: ({check id: finding},
    the check context); fails on any check error."""
    from dsaudit.config import AuditConfig
    from dsaudit.pipeline import build, run_checks

    config = AuditConfig(select=tuple(select), jobs=1, **cfg)
    findings, errors, ctx, _ = run_checks(build(root, config), config)
    assert not errors, errors
    return {f.check_id: f for f in findings}, ctx


def make_split_dataset(root: Path, counts: dict[str, dict[str, int]], size: int = 64,
                       seed: int = 0, ext: str = ".png") -> dict[str, dict[str, list[Path]]]:
    """Build ROOT/<split>/<class>/img_XXX.ext with distinct real patches; counts[split][class] = n.
    Use split "" for a pool layout (ROOT/<class>/...)."""
    total = sum(n for per in counts.values() for n in per.values())
    patches = iter(real_patches(total, size=size, seed=seed, stride=size // 2 if total > 100 else None))
    out: dict[str, dict[str, list[Path]]] = {}
    for split, per_class in counts.items():
        for label, n in per_class.items():
            folder = root / split / label if split else root / label
            for i in range(n):
                p = write_image(folder / f"img_{i:03d}{ext}", next(patches))
                out.setdefault(split, {}).setdefault(label, []).append(p)
    return out


def tree_snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under root (files, folders, links) with size, mtime and content digest."""
    import hashlib

    snap = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = b""
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).digest()
            snap[p] = (st.st_size, st.st_mtime_ns, digest)
    return snap
