"""``image_dataset_from_directory(..., validation_split=f, subset="both", seed=s)``, simulated
exactly (``--keras-split f --seed s``), without TensorFlow.

Keras (keras/src/utils/dataset_utils.py, ``index_directory`` and
``get_training_or_validation_split``; the same in TensorFlow 2.16-2.21 / Keras 3) does this, and so
does :func:`index_directory` here:

1. classes: ``sorted(os.listdir(directory))``, the entries that are folders (symlinks followed)
   and do not start with ``.``;
2. files of each class, in class order: ``os.walk(class_dir)`` without following folder symlinks,
   the walk *sorted by the folder path string* (so ``cat/a b/`` comes before ``cat/a/``, and a
   folder's own files before its sub-folders'), each folder's files sorted by name, kept when
   the lower-cased name ends with .bmp, .gif, .jpeg, .jpg or .png (hidden files included: Keras
   does not skip ``._x.jpg`` or ``.ipynb_checkpoints/x-checkpoint.png``);
3. ``np.random.RandomState(seed).shuffle(file_paths)`` (labels with a second RandomState of the
   same seed, hence the same permutation);
4. ``num_val = int(validation_split * n)``: training ``paths[:-num_val]``, validation
   ``paths[-num_val:]`` (with num_val 0, Keras finds no training images and raises).

This is not dsaudit's own walk (which skips hidden files, follows links that stay inside ROOT, and
indexes every file), which is why the listing is made here, from the folder names alone (nothing
is opened), and compared with the index: files Keras would load that the index does not hold,
and indexed files Keras never sees, are reported. tests/test_keras_split.py checks the simulation
against TensorFlow's own ``file_paths``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # keras image_dataset_utils.ALLOWLIST_FORMATS


def index_directory(directory: str) -> tuple[list[str], list[int], list[str]]:
    """(file paths relative to `directory`, integer labels, class names) in Keras' order before
    its shuffle. Paths use os.sep, as Keras' ``os.path.join`` makes them."""
    class_names = [d for d in sorted(os.listdir(directory))
                   if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")]
    paths: list[str] = []
    labels: list[int] = []
    for index, name in enumerate(class_names):
        class_dir = os.path.join(directory, name)
        for root, _, files in sorted(os.walk(class_dir), key=lambda x: x[0]):
            for fname in sorted(files):
                if fname.lower().endswith(ALLOWLIST_FORMATS):
                    paths.append(os.path.join(name, os.path.relpath(os.path.join(root, fname), class_dir)))
                    labels.append(index)
    return paths, labels, class_names


def shuffle_and_split(paths: list[str], labels: list[int], validation_split: float,
                      seed: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(training, validation) lists of (path, label) exactly as Keras shuffles and splits them."""
    import numpy as np

    shuffled = list(paths)
    np.random.RandomState(seed).shuffle(shuffled)
    shuffled_labels = list(labels)
    np.random.RandomState(seed).shuffle(shuffled_labels)
    pairs = list(zip(shuffled, shuffled_labels))
    num_val = int(validation_split * len(pairs))
    if num_val == 0:  # paths[:-0] is empty: Keras raises "No training images found"
        return [], pairs
    return pairs[:-num_val], pairs[-num_val:]


@dataclass
class LoaderSplit:
    """A loader's own training/validation split of one source (the pool, or the train split), in
    paths relative to ROOT with labels, plus how its listing differs from the index."""

    loader: str                    # the call simulated, for messages
    source: str                    # the split it is carved from: "" (pool) or "train"
    directory: str                 # the folder the loader is given, relative to ROOT ("." for ROOT)
    validation_split: float
    seed: int
    class_names: list[str]
    training: list[tuple[str, str]] = field(default_factory=list)    # (path, label)
    validation: list[tuple[str, str]] = field(default_factory=list)
    not_indexed: list[str] = field(default_factory=list)   # listed by the loader, not samples of the index
    not_listed: list[str] = field(default_factory=list)    # samples of the index the loader never loads

    def to_dict(self) -> dict[str, Any]:
        return {"loader": self.loader, "source": self.source or "pool", "directory": self.directory,
                "validation_split": self.validation_split, "seed": self.seed,
                "class_names": list(self.class_names), "training": len(self.training),
                "validation": len(self.validation), "not_indexed": self.not_indexed[:50],
                "not_indexed_count": len(self.not_indexed), "not_listed": self.not_listed[:50],
                "not_listed_count": len(self.not_listed)}


def simulate(layout: Any, validation_split: float, seed: int) -> LoaderSplit:
    """The Keras split of the layout's pool (or train split folder). Raises ConfigError when the
    layout has no such folder (a manifest, a URL, a split layout without train)."""
    from dsaudit.config import ConfigError
    from dsaudit.index.io import is_remote
    from dsaudit.index.layout import display_path

    if layout.kind == "manifest" or is_remote(str(layout.root)):
        raise ConfigError("--keras-split simulates image_dataset_from_directory on class folders: it needs a "
                          "local ROOT/<class>/ or ROOT/train/<class>/ folder, not a manifest or a URL "
                          "(use --validation-split for a tail split of manifest rows)")
    if layout.kind == "pool":
        source, directory = "", str(layout.root)
    elif "train" in layout.split_folders:
        source, directory = "train", os.path.join(str(layout.root), layout.split_folders["train"][0])
    else:
        raise ConfigError("--keras-split carves the validation subset from the training folder, and this "
                          "dataset has no train split folder")
    rel_dir = display_path(os.path.relpath(directory, str(layout.root))).replace(os.sep, "/")
    paths, labels, class_names = index_directory(directory)

    def shown(p: str) -> str:
        rel = display_path(p).replace(os.sep, "/")
        return rel if rel_dir == "." else f"{rel_dir}/{rel}"

    training, validation = shuffle_and_split(paths, labels, validation_split, seed)
    names = [display_path(c) for c in class_names]
    listed = {shown(p) for p in paths}
    indexed = {e.rel for e in layout.entries if e.split == source}
    return LoaderSplit(
        loader=f"image_dataset_from_directory({rel_dir!r}, validation_split={validation_split:g}, "
               f"subset='both', seed={seed})",
        source=source, directory=rel_dir, validation_split=validation_split, seed=seed, class_names=names,
        training=[(shown(p), names[i]) for p, i in training],
        validation=[(shown(p), names[i]) for p, i in validation],
        not_indexed=sorted(listed - indexed), not_listed=sorted(indexed - listed))
