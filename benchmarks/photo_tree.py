"""Real-photo benchmark trees from CIFAR-10 train (shared by scan_speed.py and scale_1m.py).

The photos come from `../shared/datasets/cifar10-train/cifar10-train.tar.gz` (unpacked into a
temporary folder) or from an unpacked copy given by path (`train/<class>/NNNN.jpg` or the
`<class>/NNNN.jpg` folder itself). Nothing is written next to the photos: trees are built under
the caller's root. `cifar_photos` returns None when neither exists, so benchmarks skip cleanly.

A tree is the photos split with a fixed seed into train/val class folders, plus planted copies of
train photos made the way augmentation pipelines make them (random crop, flip, colour jitter,
JPEG re-encoding, at one of several sizes), written into val (a cross-split leak) or into train
next to their source (a copy inside the split). `copies.csv` in the tree's parent lists every
planted copy with its source, so a benchmark can count how many were found.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parents[1]
CIFAR_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-train" / "cifar10-train.tar.gz"


def cifar_photos(source: str | os.PathLike | None, scratch: Path) -> Path | None:
    """The folder holding the 10 CIFAR-10 class folders: `source` itself (a folder with class
    folders, or with train/<class>), or the archive `source` (default: the shared one) unpacked
    once into `scratch`. None when there is nothing to read."""
    src = Path(source) if source else CIFAR_ARCHIVE
    if src.is_dir():
        return src / "train" if (src / "train").is_dir() else src
    if not src.is_file():
        return None
    target = scratch / "cifar10-unpacked"
    if not (target / ".complete").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with tarfile.open(src) as tar:
            tar.extractall(target, filter="data")
        (target / ".complete").write_text("ok")
    return target / "train"


def list_photos(folder: Path) -> list[tuple[str, Path]]:
    """(class, path) of every photo, sorted (the archive's order)."""
    return [(c.name, p) for c in sorted(folder.iterdir()) if c.is_dir() for p in sorted(c.glob("*.jpg"))]


def augment(img: Image.Image, rng: np.random.Generator, size: int) -> tuple[Image.Image, int]:
    """A copy as augmentation pipelines make it: a random crop of 80-95% of each side (at a
    random place), a horizontal flip half of the time, brightness/contrast/saturation jitter of
    up to +-15%, resized to `size` px; returns it with the JPEG quality to save it at (70-95)."""
    w, h = img.size
    fw, fh = rng.uniform(0.8, 0.95, size=2)
    cw, ch = max(8, int(round(w * fw))), max(8, int(round(h * fh)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.uniform() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhance(out).enhance(float(rng.uniform(0.85, 1.15)))
    out = out.resize((size, size), Image.Resampling.BILINEAR)
    return out, int(rng.integers(70, 96))


def write_photo_tree(root: Path, photos: Path, n: int, seed: int = 0, val_share: float = 1 / 6,
                     copy_share: float = 0.5, sizes: tuple[int, ...] = (32,)) -> list[tuple[str, str]]:
    """Write (once) ROOT/{train,val}/<class>/ with n images: the photos (all of them, or n of them
    chosen with `seed` when n is smaller) split with `seed` into train/val, and planted copies of
    train photos filling up to n (at least 2% of n). Copies go to val or, for `copy_share` of
    them, into train beside their source; each is `augment`ed at a size drawn from `sizes`.
    Returns the (copy, source) relative paths, also kept in ROOT.parent/copies-<name>.csv."""
    listing = Path(str(root) + ".copies.csv")
    marker = root / ".complete"
    if marker.exists() and listing.exists():
        with open(listing, newline="") as fh:
            return [(r["copy"], r["source"]) for r in csv.DictReader(fh)]
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    all_photos = list_photos(photos)
    n_copies = max(n - len(all_photos), n // 50)
    n_orig = n - n_copies
    chosen = np.sort(rng.choice(len(all_photos), size=n_orig, replace=False)) if n_orig < len(all_photos) \
        else np.arange(len(all_photos))
    is_val = rng.uniform(size=len(chosen)) < val_share
    train_items: list[tuple[str, Path, str]] = []
    for k, v in zip(chosen, is_val):
        label, path = all_photos[int(k)]
        split = "val" if v else "train"
        rel = f"{split}/{label}/{path.name}"
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        if not v:
            train_items.append((label, dest, rel))
    pairs: list[tuple[str, str]] = []
    src_idx = rng.integers(0, len(train_items), size=n_copies)
    for i, s in enumerate(src_idx):
        label, src_path, src_rel = train_items[int(s)]
        split = "train" if rng.uniform() < copy_share else "val"
        with Image.open(src_path) as im:
            im = im.convert("RGB")
            copy, quality = augment(im, rng, int(sizes[int(rng.integers(0, len(sizes)))]))
        rel = f"{split}/{label}/copy{i:07d}.jpg"
        buf = io.BytesIO()
        copy.save(buf, format="JPEG", quality=quality)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(buf.getvalue())
        pairs.append((rel, src_rel))
    with open(listing, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["copy", "source"])
        w.writerows(pairs)
    marker.write_text("ok")
    return pairs


def copies_found(pairs: list[tuple[str, str]], matched: set[tuple[str, str]]) -> dict[str, float]:
    """Share of planted copies matched to their source, across splits and inside train."""
    out: dict[str, float] = {}
    for name, prefix in (("into val", "val/"), ("inside train", "train/")):
        sel = [(c, s) for c, s in pairs if c.startswith(prefix)]
        hit = sum(1 for c, s in sel if (c, s) in matched or (s, c) in matched)
        out[name] = hit / len(sel) if sel else float("nan")
        out[name + " (n)"] = len(sel)
    return out


def scratch_dir(name: str) -> Path:
    d = Path(tempfile.gettempdir()) / name
    d.mkdir(parents=True, exist_ok=True)
    return d
