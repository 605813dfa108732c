"""The built-in example: real handwritten digits (scikit-learn's bundled copy of the UCI digits, so
nothing is downloaded), upscaled and written as train/val/test class folders, with flaws planted on
purpose so that every family of checks has something to find.

The planted flaws, and the check that should report each:

* a corrupt PNG, a truncated JPEG, an empty file, a text file in a class folder  (DSA001-DSA004)
* PNG files named .jpg                                                        (DSA005)
* a few RGB images among greyscale ones                                       (DSA006)
* a .DS_Store file                                                            (DSA013)
* exact copies, a re-encoded copy, a flipped, a brightened and a resized copy of training images in
  val/test; the same image under two classes                                   (DSA201-DSA203)
* Keras-style augmented copies (``_0_1234.png``) written into train/three      (DSA204, DSA130)
* one writer's digits on both sides of the split (``writer07_``)               (DSA205 with the regex)
* class 'three' has a quarter of the others' training images                   (DSA101)
* 193 decodable training images: with --batch-size 32 the last batch holds one (DSA301)
* classes walked in order: a Keras validation_split=0.2 tail of train holds only
  the last classes                                                            (DSA311)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

CLASSES = {0: "zero", 1: "one", 2: "two", 3: "three"}
SIDE = 64
DEMO_GROUP_REGEX = r"(writer\d+)_"


def _digits() -> dict[int, list[Image.Image]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    by_class: dict[int, list[Image.Image]] = {k: [] for k in CLASSES}
    for image, target in zip(digits.images, digits.target):
        if int(target) in by_class:
            arr = (255 - image * (255 / 16)).astype(np.uint8)  # dark ink on white paper
            by_class[int(target)].append(
                Image.fromarray(arr, "L").resize((SIDE, SIDE), Image.Resampling.BICUBIC))
    return by_class


def build_demo_dataset(root: Path) -> Path:
    """Write the example dataset under `root` (created) and return it."""
    root = Path(root)
    pools = _digits()
    counts = {"train": {0: 58, 1: 58, 2: 55, 3: 15}, "val": {0: 15, 1: 15, 2: 15, 3: 15},
              "test": {0: 15, 1: 15, 2: 15, 3: 15}}
    written: dict[tuple[str, int], list[Path]] = {}
    spare: dict[int, object] = {}
    for label, name in CLASSES.items():
        images = spare[label] = iter(pools[label])
        for split in ("train", "val", "test"):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(counts[split][label]):  # pools are large enough for every count
                img = next(images)
                prefix = "writer07_" if (label == 2 and i < 3 and split in ("train", "test")) else ""
                path = folder / f"{prefix}{name}_{i:03d}.png"
                img.save(path)
                written.setdefault((split, label), []).append(path)

    def train_img(label: int, i: int) -> Image.Image:
        return Image.open(written[("train", label)][i]).convert("L")

    # Cross-split leakage: exact copies and augmented copies of training images in val and test.
    train_img(0, 10).save(root / "val" / "zero" / "copy_of_train_zero_010.png")
    train_img(1, 11).save(root / "val" / "one" / "reencoded_one_011.jpg", quality=85)
    ImageOps.mirror(train_img(2, 12)).save(root / "val" / "two" / "flipped_two_012.png")
    ImageEnhance.Brightness(train_img(0, 13)).enhance(1.25).save(root / "test" / "zero" / "bright_zero_013.png")
    train_img(1, 14).resize((48, 48), Image.Resampling.BILINEAR).save(root / "test" / "one" / "small_one_014.png")
    # The same image under two classes.
    train_img(2, 20).save(root / "val" / "three" / "three_mislabelled.png")
    # Augmented copies written into the training folder, named as Keras' ImageDataGenerator does.
    for k in range(4):
        src = train_img(3, k)
        aug = ImageOps.mirror(src) if k % 2 else src.rotate(5, fillcolor=255)
        aug.save(root / "train" / "three" / f"aug_{k}_{4821907 + k * 97313}.png")
    # Integrity flaws.
    broken = root / "train" / "two" / "broken_scan.png"
    next(spare[2]).save(broken)
    data = bytearray(broken.read_bytes())
    data[len(data) // 2: len(data) // 2 + 16] = b"\xde\xad\xbe\xef" * 4  # damage the pixel data
    broken.write_bytes(bytes(data))
    jpeg = root / "val" / "one" / "truncated_one.jpg"
    next(spare[1]).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    (root / "train" / "zero" / "empty.png").write_bytes(b"")
    (root / "train" / "one" / "labels_notes.txt").write_text("exported by labeling tool v2\n")
    for i in range(3):
        next(spare[1]).save(root / "train" / "one" / f"png_in_disguise_{i}.jpg", format="PNG")
    for i in range(4):
        Image.open(written[("train", 0)][50 + i]).convert("RGB").save(
            written[("train", 0)][50 + i])
    (root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root
