"""Which folders of a dataset are its splits, and why: read from folder names and folder shapes.

Owners name their split folders in many ways (``TrainingData``, ``train_dir``, ``training_set``,
``seg_train``, ``Train_Images``, ``images_test``), wrap them once more (Kaggle's doubled
``training_set/training_set``, a ``data/`` folder around them, an ``images/`` folder inside one), or
give them names that say nothing (``A/`` and ``B/`` holding the same class folders). Reading such a
dataset as one pool makes every split folder a "class", and every copy between the splits a "copy
under two labels": a confident, wrong report. This module decides from names alone, through a
`lister` of sub-folder names, so the local walk (index/layout.py) and the object-storage walk
(index/remote.py) read a tree the same way. It never opens a file.

The decision, in order:

1. ``--split train=FOLDER`` (config ``splits``) overrides everything.
2. Top-level folders whose name holds a split word in any case or form, with affixes, are splits
   when at least one of them holds sub-folders (class folders).
3. The only top-level folder holds such folders: it is a wrapper (``data/``), read through.
4. Top-level folders that hold largely the same class folders are splits when names say nothing:
   the one with the most entries is train, the next val, the next test; a warning names the choice.

A split folder that holds exactly one folder, named like itself, like the same split, or like a
generic wrapper (``images``, ``data``), which holds folders, is read through (one level).
Every step taken is a sentence in `Plan.reading`, shown in the terminal and the report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

SPLIT_ORDER = ("train", "val", "test")
SPLIT_WORDS = {
    "train": "train", "training": "train", "trn": "train", "trainval": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val", "validate": "val",
    "test": "test", "testing": "test", "tst": "test", "eval": "test", "evaluation": "test",
    "holdout": "test",
}
# words that may be glued to a split word without a separator: "trainset", "testdata", "valimages"
AFFIXES = ("set", "sets", "data", "dataset", "dir", "images", "imgs", "img", "split", "ds", "folder",
           "samples", "files")
WRAPPER_WORDS = {"data", "dataset", "datasets", "images", "imgs", "img", "image", "pictures", "photos",
                 "files", "samples", "raw"}
SAME_CLASSES_MIN_OVERLAP = 0.5   # Jaccard overlap of two folders' sub-folder names to call them alike

Lister = Callable[[str], "list[str] | None"]  # "/"-joined path relative to ROOT -> sub-folder names (None: unreadable)


def _tokens(name: str) -> list[str]:
    """Lower-case words of a folder name: split at separators, digits and camelCase humps
    (TrainingData -> training, data; Covid-19CT -> covid, ct; images_test -> images, test)."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name)
    return [t for t in re.split(r"[^a-zA-Z]+", spaced.lower()) if t]


def _word_split(token: str) -> str | None:
    if token in SPLIT_WORDS:
        return SPLIT_WORDS[token]
    for word, split in SPLIT_WORDS.items():
        if len(word) < 3:
            continue
        for affix in AFFIXES:
            if token in (word + affix, affix + word):
                return split
    return None


def split_of_name(name: str) -> str | None:
    """The canonical split ("train", "val", "test") a folder name stands for, or None.

    A name with words of two different splits (``train_test``) stands for none of them: it is
    reported, not guessed."""
    found = {s for s in (_word_split(t) for t in _tokens(name)) if s}
    return found.pop() if len(found) == 1 else None


def canonical_split(name: str) -> str | None:
    """train/val/test for a split name given by a user (--split KEY=..., a manifest's split column):
    the canonical names and the plain words of SPLIT_WORDS, in any case."""
    return SPLIT_WORDS.get(name.strip().lower())


@dataclass
class Plan:
    """How ROOT is read: `splits` maps each canonical split to the folders (paths relative to ROOT)
    whose sub-folders are its classes; empty for a pool of class folders under `pool_root`."""

    splits: dict[str, list[str]] = field(default_factory=dict)
    pool_root: str = ""
    wrappers: list[str] = field(default_factory=list)      # folders read through (not class folders)
    unused: list[str] = field(default_factory=list)        # top-level folders (or in a wrapper) not scanned
    reading: list[str] = field(default_factory=list)       # how and why, one sentence each
    warnings: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, path, detail)
    source: str = ""                                       # "names" | "shape" | "option" | "" (pool)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _through_wrapper(lister: Lister, path: str, split: str) -> tuple[str, str | None]:
    """(the folder holding the class folders of the split folder `path`, the wrapper read through
    or None): one level, when `path` holds exactly one folder named like itself, like the same
    split or like a generic wrapper, and that folder holds folders."""
    children = lister(path) or []
    if len(children) != 1:
        return path, None
    only = children[0]
    own = path.rsplit("/", 1)[-1]
    alike = (only.lower() == own.lower() or split_of_name(only) == split
             or only.lower() in WRAPPER_WORDS)
    inner = _join(path, only)
    if alike and lister(inner):
        return inner, path
    return path, None


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def plan_from_option(lister: Lister, chosen: dict[str, list[str]], top: list[str]) -> Plan:
    """The plan of `--split NAME=FOLDER`: exactly those folders, other top-level folders unused."""
    plan = Plan(source="option")
    for split in SPLIT_ORDER:
        for folder in chosen.get(split, []):
            plan.splits.setdefault(split, []).append(folder)
    named = ", ".join(f"{s}={f}" for s in SPLIT_ORDER for f in chosen.get(s, []))
    plan.reading.append(f"splits given by --split: {named}")
    firsts = {f.split("/", 1)[0] for fs in chosen.values() for f in fs}
    plan.unused = [n for n in top if n not in firsts]
    return plan


def plan_layout(lister: Lister, sizes: Callable[[str], int] | None = None) -> Plan:
    """Read ROOT's layout from folder names and shapes (see the module docstring).

    `lister("")` gives ROOT's visible sub-folders in name order; `sizes(path)` the number of
    entries under a folder's class folders (for the shape rule's choice of train), optional."""
    top = lister("") or []
    plan = _by_names(lister, "", top)
    if plan is not None:
        return plan
    if len(top) == 1:
        inner = lister(top[0]) or []
        plan = _by_names(lister, top[0], inner)
        if plan is not None:
            plan.wrappers.insert(0, top[0])
            plan.reading.insert(0, f"read through {top[0]!r}, the only top-level folder: it holds the split "
                                   "folders")
            return plan
    plan = _by_shape(lister, top, sizes)
    if plan is not None:
        return plan
    plan = Plan()
    named = [n for n in top if split_of_name(n)]
    if named:
        plan.warnings.append((
            "split_named_classes", ", ".join(named),
            f"class folder(s) {', '.join(repr(n) for n in named)} are named like splits but hold no class "
            "folders, so they were read as classes of one pool; if they are splits, put each class in its "
            "own folder inside them (ROOT/<split>/<class>/<files>), or use --manifest"))
        plan.reading.append("one pool of class folders: the folders named like splits hold no class folders")
    else:
        plan.reading.append("one pool of class folders (ROOT/<class>/<files>): no top-level folder is named "
                            "like a split, and they do not hold the same class folders")
    return plan


def _by_names(lister: Lister, parent: str, names: list[str]) -> Plan | None:
    """Splits read from the folder names in `parent`, or None when none is named like a split or
    none of those holds folders."""
    named = [(split_of_name(n), n) for n in names]
    named = [(s, n) for s, n in named if s]
    if not named or not any(lister(_join(parent, n)) for _, n in named):
        return None
    plan = Plan(source="names")
    reads = []
    for split, name in sorted(named, key=lambda x: (SPLIT_ORDER.index(x[0]), x[1])):
        path = _join(parent, name)
        inner, wrapper = _through_wrapper(lister, path, split)
        if wrapper is not None:
            plan.wrappers.append(wrapper)
            reads.append(f"{inner!r} -> {split} ({name!r} holds only the folder {inner.rsplit('/', 1)[-1]!r}, "
                         "read through)")
        else:
            reads.append(f"{name!r} -> {split}")
        plan.splits.setdefault(split, []).append(inner)
    plan.reading.append("split folders by name: " + ", ".join(reads))
    plan.unused = [_join(parent, n) for n in names if not split_of_name(n)]
    for name in plan.unused:
        alike = _alike_split(lister, name, plan)
        if alike:
            plan.warnings.append((
                "ambiguous_layout", name,
                f"{name!r} is not named like a split but holds largely the same class folders as {alike!r}; "
                f"it was not scanned: if it is a split, pass --split val={name} (or test=...)"))
    return plan


def _alike_split(lister: Lister, folder: str, plan: Plan) -> str | None:
    mine = set(lister(folder) or [])
    for folders in plan.splits.values():
        for f in folders:
            if len(mine) >= 2 and _overlap(mine, set(lister(f) or [])) >= SAME_CLASSES_MIN_OVERLAP:
                return f
    return None


def _by_shape(lister: Lister, top: list[str], sizes: Callable[[str], int] | None) -> Plan | None:
    """Splits read from shape: two or more top-level folders, each holding two or more folders,
    whose folder names largely agree (and no folder holds them without the others)."""
    if len(top) < 2:
        return None
    subs = {n: set(lister(n) or []) for n in top}
    if any(len(s) < 2 for s in subs.values()):
        return None
    if min(_overlap(subs[a], subs[b]) for i, a in enumerate(top) for b in top[i + 1:]) < SAME_CLASSES_MIN_OVERLAP:
        return None
    size = {n: (sizes(n) if sizes else 0) for n in top}
    ordered = sorted(top, key=lambda n: (-size[n], n))
    plan = Plan(source="shape")
    for split, name in zip(SPLIT_ORDER, ordered):
        plan.splits[split] = [name]
    plan.unused = ordered[len(SPLIT_ORDER):]
    common = set.intersection(*subs.values())
    chosen = ", ".join(f"{name!r} -> {split}" for split, name in zip(SPLIT_ORDER, ordered))
    basis = "the most files" if sizes else "name order"
    plan.reading.append(f"split folders by shape: no folder is named like a split, but the {len(top)} top-level "
                        f"folders hold largely the same class folders ({len(common)} in common); by {basis}: "
                        f"{chosen}")
    plan.warnings.append((
        "ambiguous_layout", ordered[0],
        f"the top-level folders {', '.join(map(repr, top))} hold the same class folders, so they were read as "
        f"splits ({chosen}, by {basis})"
        + (f"; {', '.join(map(repr, plan.unused))} not scanned" if plan.unused else "")
        + "; pass --split train=FOLDER --split val=FOLDER to say which is which"))
    return plan
