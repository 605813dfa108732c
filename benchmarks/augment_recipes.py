"""Near-duplicates made by the augmentation recipes people actually run, found or not by a scan.

    python benchmarks/augment_recipes.py [--cifar-dir DIR | --cifar-archive TAR] [--per 20]
                                         [--sets cifar,ct] [--recipes idg-classic,...] [--sizes native,large]

Sources are real photos: CIFAR-10 training JPEGs (the archive ../shared/datasets/cifar10-train/
cifar10-train.tar.gz, unpacked into a temporary folder, or an unpacked copy given with
--cifar-dir) and COVID-CT slices (../shared/datasets/covid-ct, shrunk to 256 px at most). A set
whose data is absent is skipped with a line saying so; a recipe whose library is not installed
(pip install -e ".[bench]") is skipped the same way.

Copies are made by the real libraries, one copy per source, each recipe drawing all its
transforms together as it does in training:

  idg-classic       Keras ImageDataGenerator(rotation 40, shifts 0.2, shear 0.2, zoom 0.2,
                    horizontal flip, fill_mode nearest): the tutorial recipe
  idg-medical       ImageDataGenerator(rotation 60, shifts 0.1, shear 0.2, both flips,
                    brightness 0.9-1.1, fill nearest): the melanoma recipe of issue 15
  idg-reflect / idg-wrap / idg-constant   the classic recipe with that fill_mode
  keras-layers      RandomFlip, RandomRotation(0.2), RandomZoom(0.2), RandomTranslation(0.1, 0.1),
                    RandomContrast(0.2) applied in training mode
  torchvision       RandomResizedCrop(scale=(0.6, 1.0)) + RandomHorizontalFlip + ColorJitter(0.2, 0.2, 0.2)
  albumentations    ShiftScaleRotate(p=1, its default limits: shift 0.0625, scale 0.1, rotation 45,
                    reflect-101 border) + HorizontalFlip + RandomBrightnessContrast

"native" copies keep the source's size; "large" copies are made at 128-224 px (Keras'
flow_from_directory(target_size=...) resizes first, with its default nearest interpolation;
torchvision's RandomResizedCrop outputs that size; the others resize first, bilinear). Copies
alternate between PNG and JPEG (quality 90).

Per recipe and size, half of the copies are of validation images written into train/<class>
("cross": leakage, DSA201/202) and half of train images written next to them ("in": duplicate
clusters, DSA204). The rest of val are clean photos that have no copy anywhere. The dataset is
scanned as a user would (dsaudit.pipeline with the default config, all checks but the probe).
A copy counts as found when it ends in one group (connected component of matched pairs) with its
source. Printed: recall per recipe, size and direction; the share of clean val images falsely
flagged: grouped with a train image, less those already grouped with one in a scan of the
originals alone (the set without its copies: COVID-CT holds adjacent slices of one scan under
names that do not tell their figure, so some clean val slices have a sibling in train before any
copy is made; those are the dataset's near-duplicates, not the matcher's false flags, and are
printed apart); train's effective (distinct) count per class against the truth, and DSA204's
severity.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import warnings

import numpy as np
from PIL import Image

warnings.filterwarnings("ignore", message=".*ShiftScaleRotate is a special case.*")

HERE = Path(__file__).resolve().parent
# appended, not prepended: PYTHONPATH=<a checkout>/src picks the dsaudit under test (to compare two)
sys.path.append(str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = HERE.parent.parent / "shared" / "datasets"
DEFAULT_ARCHIVE = SHARED / "cifar10-train" / "cifar10-train.tar.gz"
COVID_CT = SHARED / "covid-ct"
LARGE_SIZES = (128, 160, 192, 224)
ALL_RECIPES = ("idg-classic", "idg-medical", "idg-reflect", "idg-wrap", "idg-constant",
               "keras-layers", "torchvision", "albumentations")


# ---------------------------------------------------------------------------------------------
# recipes: each returns make(images, size, seed) -> list of copies, or raises ImportError
# ---------------------------------------------------------------------------------------------

def _image_data_generator():
    try:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator
    except ImportError:  # older Keras / tf.keras
        from tensorflow.keras.preprocessing.image import ImageDataGenerator  # type: ignore
    return ImageDataGenerator


def _idg(**kwargs):
    gen_cls = _image_data_generator()
    gen = gen_cls(**kwargs)

    def make(images: list[Image.Image], size: int | None, seed: int) -> list[Image.Image]:
        out = []
        for i, im in enumerate(images):
            if size:   # flow_from_directory(target_size=...) loads with nearest interpolation
                im = im.resize((size, size), Image.Resampling.NEAREST)
            x = np.asarray(im.convert("RGB"), np.float32)
            y = gen.random_transform(x, seed=seed + i)
            out.append(Image.fromarray(np.clip(np.rint(y), 0, 255).astype(np.uint8)))
        return out
    return make


CLASSIC = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
               zoom_range=0.2, horizontal_flip=True)


def _keras_layers():
    import keras

    def make(images: list[Image.Image], size: int | None, seed: int) -> list[Image.Image]:
        model = keras.Sequential([
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.2, seed=seed + 1),
            keras.layers.RandomZoom(0.2, seed=seed + 2),
            keras.layers.RandomTranslation(0.1, 0.1, seed=seed + 3),
            keras.layers.RandomContrast(0.2, seed=seed + 4),
        ])
        out = []
        for im in images:
            if size:
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            x = np.asarray(im.convert("RGB"), np.float32)[None]
            y = np.asarray(model(x, training=True))[0]
            out.append(Image.fromarray(np.clip(np.rint(y), 0, 255).astype(np.uint8)))
        return out
    return make


def _torchvision():
    import torch
    from torchvision import transforms as T

    def make(images: list[Image.Image], size: int | None, seed: int) -> list[Image.Image]:
        torch.manual_seed(seed)
        out = []
        for im in images:
            side = size or im.size[0]
            tf = T.Compose([T.RandomResizedCrop(side if size else (im.size[1], im.size[0]), scale=(0.6, 1.0)),
                            T.RandomHorizontalFlip(), T.ColorJitter(0.2, 0.2, 0.2)])
            out.append(tf(im.convert("RGB")))
        return out
    return make


def _albumentations():
    import albumentations as A

    def make(images: list[Image.Image], size: int | None, seed: int) -> list[Image.Image]:
        steps = [A.Resize(size, size)] if size else []
        steps += [A.ShiftScaleRotate(p=1.0), A.HorizontalFlip(), A.RandomBrightnessContrast()]
        tf = A.Compose(steps, seed=seed)
        return [Image.fromarray(tf(image=np.asarray(im.convert("RGB")))["image"]) for im in images]
    return make


def recipe(name: str):
    """make(images, size, seed) for a recipe name (ImportError when its library is missing)."""
    if name == "idg-classic":
        return _idg(**CLASSIC, fill_mode="nearest")
    if name == "idg-medical":
        return _idg(rotation_range=60, width_shift_range=0.1, height_shift_range=0.1, shear_range=0.2,
                    horizontal_flip=True, vertical_flip=True, brightness_range=(0.9, 1.1), fill_mode="nearest")
    if name in ("idg-reflect", "idg-wrap", "idg-constant"):
        return _idg(**CLASSIC, fill_mode=name.split("-")[1], cval=0.0)
    if name == "keras-layers":
        return _keras_layers()
    if name == "torchvision":
        return _torchvision()
    if name == "albumentations":
        return _albumentations()
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------

def cifar_files(cifar_dir: Path | None, archive: Path, tmp: Path) -> list[tuple[str, Path]]:
    """(class, path) of every CIFAR-10 training JPEG: from an unpacked folder, or the archive
    unpacked into `tmp`."""
    if cifar_dir is None:
        if not archive.is_file():
            return []
        with tarfile.open(archive) as tar:
            tar.extractall(tmp / "cifar", filter="data")
        roots = [p for p in (tmp / "cifar").rglob("*") if p.is_dir() and (p / "airplane").is_dir()]
        if not roots:
            return []
        cifar_dir = roots[0]
    out = []
    for cls in sorted(os.listdir(cifar_dir)):
        d = cifar_dir / cls
        if d.is_dir():
            out += [(cls, d / f) for f in sorted(os.listdir(d)) if f.lower().endswith((".jpg", ".png", ".jpeg"))]
    return out


def ct_files() -> list[tuple[str, Path, str]]:
    """(class, path, figure) of the COVID-CT slices (leak_data.ct_group): the slices of one
    published figure stay on one side, so no clean val slice has a sibling in train."""
    from leak_data import ct_group

    out = []
    if not COVID_CT.is_dir():
        return out
    for cls in ("CT_COVID", "CT_NonCOVID"):
        for p in sorted((COVID_CT / cls).rglob("*")):
            if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
                out.append((cls, p, ct_group(p.name)))
    return out


def load(path: Path, max_side: int | None = None) -> Image.Image:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if max_side:
            im.thumbnail((max_side, max_side))
        return im.copy()


# ---------------------------------------------------------------------------------------------
# the dataset
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Planted:
    recipe: str
    size: str          # "native" / "large"
    direction: str     # "cross" (a val image copied into train) / "in" (a train image copied into train)
    source: str        # relative path of the source
    copy: str          # relative path of the copy


def save(im: Image.Image, root: Path, rel: str) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if rel.endswith(".jpg"):
        im.convert("RGB").save(p, quality=90)
    else:
        im.save(p)
    return rel


def build_set(root: Path, name: str, items: list[tuple[str, Path, str]], recipes: list, sizes: list[str],
              per: int, n_clean: int, n_train: int, rng: np.random.Generator, max_side: int | None):
    """Write train/val with planted copies under `root`; return (planted, clean val paths, truth of
    distinct train images per class)."""
    # one side per group (paper / patient) for CT: the clean val images have no sibling in train
    # and the clean val images come from groups of their own, with no copy of a sibling anywhere
    groups = sorted({g for _, _, g in items})
    rng.shuffle(groups)
    n_jobs = len(recipes) * len(sizes)
    need_in, need_cross = n_jobs * (per - per // 2), n_jobs * (per // 2)
    members = defaultdict(list)
    for i, it in enumerate(items):
        members[it[2]].append(i)
    val_src: list[int] = []
    val_groups = set()
    for g in groups[len(groups) // 2:]:        # val groups that give the copied sources
        if len(val_src) >= need_cross:
            break
        val_groups.add(g)
        val_src += members[g]
    val_src = val_src[:need_cross]
    if len(groups) < len(items):   # CT figures: a quarter of them for the clean images
        clean_groups = set(groups[: len(groups) // 4])
    else:                          # one image a group (CIFAR): the first half less the sources
        clean_groups = set(groups[: len(groups) // 2]) - val_groups
    clean = [i for i, it in enumerate(items) if it[2] in clean_groups]
    train_pool = [i for i, it in enumerate(items) if it[2] not in clean_groups and it[2] not in val_groups]
    rng.shuffle(train_pool)
    rng.shuffle(clean)
    if need_in > len(train_pool) or len(val_src) < need_cross or not clean:
        raise SystemExit(f"{name}: not enough images for --per {per}")
    train_src = train_pool[:need_in]
    train_fill = train_pool[need_in:need_in + n_train]
    clean = clean[:n_clean]
    written: dict[int, str] = {}
    images: dict[int, Image.Image] = {}

    def place(i: int, split: str) -> str:
        cls, path, _ = items[i]
        im = load(path, max_side)
        images[i] = im
        ext = ".jpg" if path.suffix.lower() in (".jpg", ".jpeg") else ".png"
        written[i] = save(im, root, f"{split}/{cls}/{name}_{i:05d}{ext}")
        return written[i]

    for i in train_src + train_fill:
        place(i, "train")
    for i in val_src + clean:
        place(i, "val")
    planted: list[Planted] = []
    truth: dict[str, int] = defaultdict(int)
    for i in train_src + train_fill:
        truth[items[i][0]] += 1
    k_in = k_cross = 0
    for r_i, (rname, make) in enumerate(recipes):
        for s_i, size in enumerate(sizes):
            jobs = [("in", i) for i in train_src[k_in:k_in + per - per // 2]]
            jobs += [("cross", i) for i in val_src[k_cross:k_cross + per // 2]]
            k_in += per - per // 2
            k_cross += per // 2
            side = None
            sides = []
            if size == "large":
                sides = [int(rng.choice(LARGE_SIZES)) for _ in jobs]
            seed = 1000 * (r_i + 1) + 100 * s_i
            copies = []
            for j, (direction, i) in enumerate(jobs):   # one call per copy: sizes differ
                side = sides[j] if sides else None
                copies.append(make([images[i]], side, seed + j)[0])
            for j, ((direction, i), im) in enumerate(zip(jobs, copies)):
                cls = items[i][0]
                ext = ".jpg" if j % 2 else ".png"
                rel = save(im, root, f"train/{cls}/aug_{rname}_{size}_{direction}_{j:03d}_{i:05d}{ext}")
                planted.append(Planted(rname, size, direction, written[i], rel))
                if direction == "cross":
                    truth[cls] += 1      # a copy of a val image is a distinct image inside train
    return planted, [written[i] for i in clean], dict(truth)


# ---------------------------------------------------------------------------------------------
# scanning and scoring
# ---------------------------------------------------------------------------------------------

def scan_groups(root: Path, jobs: int):
    """Groups (connected components of matched pairs), effective counts, DSA204 findings."""
    from dsaudit.config import AuditConfig, ProbeConfig
    from dsaudit.pipeline import build, run_checks
    from dsaudit.similarity.duplicates import Duplicates

    cfg = AuditConfig(jobs=jobs, cache=False, probe=dataclasses.replace(ProbeConfig(), mode="off"))
    t0 = time.perf_counter()
    index = build(root, cfg)
    findings, errors, ctx, _ = run_checks(index, cfg)
    dt = time.perf_counter() - t0
    if errors:
        print(f"  check errors: {errors}")
    table = index.table.reset_index(drop=True)
    paths = table["path"].astype(str).to_numpy()
    pairs = ctx.result(Duplicates).pairs
    parent = list(range(len(paths)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for a, b in zip(pairs["a"].tolist(), pairs["b"].tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    comp = {p: find(i) for i, p in enumerate(paths)}
    size = defaultdict(int)
    for r in comp.values():
        size[r] += 1
    effective = ctx.result(Duplicates).effective
    dsa204 = [f for f in findings if f.check_id == "DSA204" and not str(f.subject).startswith("budget:")]
    return comp, size, effective, dsa204, dt, findings


def flagged_among_originals(root: Path, planted: list[Planted], clean: list[str], jobs: int) -> list[str]:
    """The clean val images grouped with a train image in a scan of the originals alone (the set
    without its planted copies, hard links in a sibling folder): near-duplicates the dataset
    already holds, which a copy did not make."""
    copies = {p.copy for p in planted}
    orig = root.parent / (root.name + "-originals")
    if orig.exists():
        shutil.rmtree(orig)
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in copies:
            (orig / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(p, orig / rel)
    try:
        comp, *_ = scan_groups(orig, jobs)
    finally:
        shutil.rmtree(orig, ignore_errors=True)
    with_train = {r for p, r in comp.items() if p.startswith("train/")}
    return [c for c in clean if comp.get(c) in with_train]


def report(name: str, planted: list[Planted], clean: list[str], truth: dict[str, int], root: Path, jobs: int):
    comp, size, effective, dsa204, dt, findings = scan_groups(root, jobs)
    n_train = sum(1 for p in comp if p.startswith("train/"))
    n_val = sum(1 for p in comp if p.startswith("val/"))
    print(f"\n{name}: {n_train} train files ({len(planted)} copies), {n_val} val "
          f"({len(clean)} clean); scan {dt:.1f} s")
    rec: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    for p in planted:
        rec[(p.recipe, p.size, p.direction)].append(comp.get(p.copy, -1) == comp.get(p.source, -2))
    recipes = list(dict.fromkeys(p.recipe for p in planted))
    sizes = list(dict.fromkeys(p.size for p in planted))
    heads = [f"{s} {d}" for s in sizes for d in ("cross", "in")]
    print("| recipe | " + " | ".join(heads) + " | all |")
    print("|---" * (len(heads) + 2) + "|")
    for r in recipes:
        cells = []
        for s in sizes:
            for d in ("cross", "in"):
                v = rec.get((r, s, d), [])
                cells.append(f"{np.mean(v):.2f} ({sum(v)}/{len(v)})" if v else "-")
        allv = [x for (rr, _, _), v in rec.items() if rr == r for x in v]
        print(f"| {r} | " + " | ".join(cells) + f" | {np.mean(allv):.2f} |")
    allv = [x for v in rec.values() for x in v]
    print("| all | " + " | ".join("" for _ in heads) + f" | {np.mean(allv):.3f} |")
    # a clean val image is flagged when its group holds a train image (a leak); grouped with other
    # val images only, it is a duplicate cluster inside val (adjacent CT slices of one figure)
    with_train = {r for p, r in comp.items() if p.startswith("train/")}
    flagged = [c for c in clean if comp[c] in with_train]
    grouped = [c for c in clean if size[comp[c]] > 1]
    # the dataset's own near-duplicates: clean val images that match a train image before any copy
    # is planted (COVID-CT's adjacent slices of one scan, whose names do not tell their figure) are
    # not false flags of the matcher; the same scan of the originals alone tells them
    before = set(flagged_among_originals(root, planted, clean, jobs)) if flagged else set()
    false = [c for c in flagged if c not in before]
    print(f"clean val images falsely flagged (grouped with a train image, and not before the copies were "
          f"planted): {len(false)}/{len(clean)} = {len(false) / max(len(clean), 1):.2%}"
          + (f"  e.g. {false[:3]}" if false else "")
          + f"; grouped with a train image: {len(flagged)}, of which {len(flagged) - len(false)} already among "
          f"the originals; in any group: {len(grouped)}/{len(clean)}")
    tot_true = tot_rep = 0
    errs = []
    for cls, t in sorted(truth.items()):
        v = effective.get(("train", cls))
        if v is None:
            continue
        tot_true += t
        tot_rep += v["effective"]
        errs.append(abs(v["effective"] - t) / t)
    print(f"train effective (distinct) count, summed over classes: reported {tot_rep}, truth {tot_true} "
          f"(mean abs error per class {np.mean(errs):.1%})")
    for f in dsa204:
        print(f"DSA204 {f.severity.name.lower()}: {f.message[:200]}")
    return rec, flagged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cifar-archive", type=Path, default=DEFAULT_ARCHIVE)
    ap.add_argument("--cifar-dir", type=Path, default=None, help="an unpacked CIFAR-10 train folder (<class>/<file>)")
    ap.add_argument("--sets", default="cifar,ct")
    ap.add_argument("--recipes", default=",".join(ALL_RECIPES))
    ap.add_argument("--sizes", default="native,large")
    ap.add_argument("--per", type=int, default=20, help="copies per recipe and size (half cross-split, half in-split)")
    ap.add_argument("--clean", type=int, default=400, help="clean val images per set")
    ap.add_argument("--train", type=int, default=800, help="further train images (no copy) per set")
    ap.add_argument("--ct-per", type=int, default=8, help="--per for COVID-CT (746 slices in all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="write the datasets here and keep them")
    args = ap.parse_args()
    try:   # torchvision segfaults when imported after TensorFlow (torch 2.14.1, TF 2.21): first
        import torchvision  # noqa: F401
    except ImportError:
        pass
    recipes = []
    for name in args.recipes.split(","):
        try:
            recipes.append((name, recipe(name)))
        except ImportError as e:
            print(f"recipe {name}: skipped, its library is missing ({e.name or e}); pip install -e '.[bench]'")
    sizes = args.sizes.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="dsaudit-recipes-"))
    try:
        for set_name in args.sets.split(","):
            rng = np.random.default_rng(args.seed)
            root = (args.keep or tmp) / set_name
            if root.exists():
                shutil.rmtree(root)
            if set_name == "cifar":
                files = cifar_files(args.cifar_dir, args.cifar_archive, tmp)
                if not files:
                    print(f"\ncifar: skipped (no {args.cifar_archive} and no --cifar-dir)")
                    continue
                pick = rng.choice(len(files), size=min(len(files), 20000), replace=False)
                items = [(files[i][0], files[i][1], f"c{i}") for i in sorted(pick)]
                data = build_set(root, "cifar", items, recipes, sizes, args.per, args.clean, args.train, rng, None)
            elif set_name == "ct":
                items = ct_files()
                if not items:
                    print("\nct: skipped (no ../shared/datasets/covid-ct)")
                    continue
                data = build_set(root, "ct", items, recipes, sizes, args.ct_per, args.clean, args.train, rng, 256)
            else:
                raise SystemExit(f"unknown set {set_name}")
            report(set_name, *data, root, args.jobs)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
