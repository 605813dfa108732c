"""The real-photo benchmark trees (benchmarks/photo_tree.py) and the benchmarks' clean skip without
the shared CIFAR-10 archive: a benchmark that silently measures nothing is worse than none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import photo_tree  # noqa: E402


def _photos(root: Path, per_class: int = 12) -> Path:
    rng = np.random.default_rng(1)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            low = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
            Image.fromarray(low).resize((32, 32), Image.Resampling.BICUBIC).save(root / label / f"{i:04d}.jpg")
    return root


def test_missing_photos_give_none_and_the_benchmarks_skip(tmp_path):
    assert photo_tree.cifar_photos(tmp_path / "nothing.tar.gz", tmp_path) is None
    for script in ("scan_speed.py", "scale_1m.py"):
        if not (BENCH / script).exists():
            continue
        p = subprocess.run([sys.executable, str(BENCH / script), "--cifar-dir", str(tmp_path / "absent"),
                            "--root", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert "skipped" in p.stdout
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.jpg"))


def test_a_photo_tree_splits_the_photos_and_plants_listed_copies(tmp_path):
    photos = _photos(tmp_path / "photos")
    assert photo_tree.cifar_photos(photos, tmp_path) == photos   # a folder of class folders as is
    root = tmp_path / "tree"
    pairs = photo_tree.write_photo_tree(root, photos, 30, seed=3, sizes=(32, 48))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    assert len(files) == 30 and len(pairs) == 6        # 24 photos + 6 copies
    assert {f.split("/")[0] for f in files} <= {"train", "val"}
    for copy, source in pairs:
        assert copy in files and source in files and source.startswith("train/")
        assert copy.split("/")[1] == source.split("/")[1]          # the source's class
        with Image.open(root / copy) as im:
            assert im.size[0] in (32, 48)
    # written once: a second call reads the listing back, and the same seed gives the same tree
    assert photo_tree.write_photo_tree(root, photos, 30, seed=3, sizes=(32, 48)) == pairs
    again = photo_tree.write_photo_tree(tmp_path / "tree2", photos, 30, seed=3, sizes=(32, 48))
    assert again == pairs
    found = photo_tree.copies_found(pairs, {pairs[0]})
    assert found["into val (n)"] + found["inside train (n)"] == 6
