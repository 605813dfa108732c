"""Small real-image datasets for the probe tests (no download): planted copies, no copies, easy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from imagery import real_patches, write_image


def table_for(root: Path) -> pd.DataFrame:
    """The index table columns the probe reads, built from the layout (no decoding needed)."""
    from PIL import Image

    from dsaudit.index.layout import discover

    layout = discover(root)
    rows = []
    for e in layout.entries:
        with Image.open(e.abs_path) as im:
            w, h = im.size
        rows.append({"path": e.rel, "abs_path": e.abs_path, "split": e.split, "label": e.label,
                     "group": e.group, "kind": "image", "readable": True, "bomb": False,
                     "width": w, "height": h, "has_features": True})
    return pd.DataFrame(rows)


def index_for(root: Path):
    from dsaudit.index.dataset import DatasetIndex
    from dsaudit.index.layout import discover

    return DatasetIndex(root=root, layout=discover(root), table=table_for(root))


def pairs_frame(table: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """The leakage.pairs artifact for (train path, val path) pairs given by relative path."""
    pos = {p: i for i, p in enumerate(table["path"])}
    rows = []
    for a, b in pairs:
        i, j = pos[a], pos[b]
        rows.append({"a": i, "b": j, "kind": "exact", "distance": 0.0, "similarity": 1.0,
                     "transform": "", "cross_split": True,
                     "same_label": table["label"].iloc[i] == table["label"].iloc[j]})
    return pd.DataFrame(rows, columns=["a", "b", "kind", "distance", "similarity", "transform",
                                       "cross_split", "same_label"])


def random_label_dataset(root: Path, n_train: int = 200, n_leak: int = 60, n_clean: int = 40,
                         copies: bool = True, seed: int = 0) -> list[tuple[str, str]]:
    """Two classes whose labels are unrelated to the pixels (only memorisation helps).

    With `copies`, the first n_leak validation images are byte copies of training images with
    the same label; without, they are fresh patches (same file names, same claimed pairs)."""
    rng = np.random.default_rng(seed)
    patches = real_patches(n_train + n_leak + n_clean, size=32, seed=seed)
    labels = rng.integers(0, 2, size=n_train)
    pairs = []
    for i in range(n_train):
        write_image(root / "train" / f"c{labels[i]}" / f"t{i:03d}.png", patches[i])
    leak_src = rng.choice(n_train, size=n_leak, replace=False)
    for k, i in enumerate(leak_src):
        src = root / "train" / f"c{labels[i]}" / f"t{i:03d}.png"
        dst = root / "val" / f"c{labels[i]}" / f"v{k:03d}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if copies:
            shutil.copyfile(src, dst)
        else:
            write_image(dst, patches[n_train + k])
        pairs.append((f"train/c{labels[i]}/t{i:03d}.png", f"val/c{labels[i]}/v{k:03d}.png"))
    for k in range(n_clean):
        lab = rng.integers(0, 2)
        write_image(root / "val" / f"c{lab}" / f"x{k:03d}.png", patches[n_train + n_leak + k])
    return pairs


def tint(patch: np.ndarray, channel: int) -> np.ndarray:
    out = patch.astype(np.int16) // 2
    out[..., channel] += 128
    return np.clip(out, 0, 255).astype(np.uint8)


def easy_leak_dataset(root: Path, n_hard: int = 120, n_easy_train: int = 60, n_easy_val: int = 30,
                      n_clean: int = 40, seed: int = 0) -> list[tuple[str, str]]:
    """Hard images (labels unrelated to pixels) plus easy ones (class 0 tinted red, class 1 blue).

    The claimed leak pairs each easy validation image with a *different* easy training image of
    its class: the leaked images are merely easy, their partners are not copies."""
    rng = np.random.default_rng(seed)
    total = n_hard + n_easy_train + n_easy_val + n_clean
    patches = real_patches(total, size=32, seed=seed + 1)
    it = iter(patches)
    easy_train: dict[int, list[str]] = {0: [], 1: []}
    for i in range(n_hard):
        lab = rng.integers(0, 2)
        write_image(root / "train" / f"c{lab}" / f"h{i:03d}.png", next(it))
    for i in range(n_easy_train):
        lab = i % 2
        rel = f"train/c{lab}/e{i:03d}.png"
        write_image(root / rel, tint(next(it), 0 if lab == 0 else 2))
        easy_train[lab].append(rel)
    pairs = []
    for k in range(n_easy_val):
        lab = k % 2
        rel = f"val/c{lab}/e{k:03d}.png"
        write_image(root / rel, tint(next(it), 0 if lab == 0 else 2))
        pairs.append((easy_train[lab][k // 2], rel))
    for k in range(n_clean):
        lab = rng.integers(0, 2)
        write_image(root / "val" / f"c{lab}" / f"x{k:03d}.png", next(it))
    return pairs


def probe_context(index, config, pairs: pd.DataFrame | None = None, outcome: dict | None = None):
    """A CheckContext for the DSA9xx checks as the pipeline builds it: the probe analysis run on
    `pairs` (the duplicate analysis' pairs), or the given `outcome`, and its report section."""
    from types import SimpleNamespace

    from dsaudit.checks.base import CheckContext
    from dsaudit.probe.analysis import ProbeOutcome
    from dsaudit.similarity.duplicates import Duplicates

    if outcome is None:
        probe = ProbeOutcome.compute(index, config, {Duplicates: SimpleNamespace(pairs=pairs)})
    else:
        probe = ProbeOutcome(outcome)
    return CheckContext(index=index, config=config, results={ProbeOutcome: probe},
                        sections={"probe": probe.report_section()})
